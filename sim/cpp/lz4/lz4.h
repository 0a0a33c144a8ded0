/* The two functions of the LZ4 library (stable API since 1.7) that Verilator's FST writer
 * (verilated_fst_c.cpp) calls. Used only when the system has the LZ4 runtime library but not its
 * development header (Debian's liblz4-1 without liblz4-dev); sim/verilate.py links the runtime
 * library directly in that case. */
#ifndef SWAT_LZ4_MIN_H
#define SWAT_LZ4_MIN_H
#ifdef __cplusplus
extern "C" {
#endif
int LZ4_compressBound(int inputSize);
int LZ4_compress_default(const char* src, char* dst, int srcSize, int dstCapacity);
#ifdef __cplusplus
}
#endif
#endif
