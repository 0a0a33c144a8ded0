"""The host protocol's numbers: opcodes, argument lengths, status bytes and reply lengths of the
byte-stream bridge (``hw.host_bridge`` builds the gateware from them, ``hw.host_driver`` speaks
them from the host). Plain Python, so that a host with only the driver needs no Amaranth. The
framing is specified in ``docs/host-protocol.md``.
"""

__all__ = [
    "PROTOCOL_VERSION",
    "PROTOCOL_VERSION_LOGS",
    "OP_NOP",
    "OP_INFO",
    "OP_WRITE_D",
    "OP_WRITE_S",
    "OP_READ_C",
    "OP_SET_SHAPE",
    "OP_START",
    "OP_STATUS",
    "OP_RESULTS",
    "ARG_BYTES",
    "ST_OK",
    "ERR_OPCODE",
    "ERR_BUSY",
    "ERR_RANGE",
    "ERR_TIMEOUT",
    "INFO_BYTES",
    "STATUS_BYTES",
]

#: INFO's version byte: 1 for a core with one C buffer, 2 for a core with result logs
PROTOCOL_VERSION = 1
PROTOCOL_VERSION_LOGS = 2

OP_NOP = 0x00
OP_INFO = 0x01
OP_WRITE_D = 0x02
OP_WRITE_S = 0x03
OP_READ_C = 0x04
OP_SET_SHAPE = 0x05
OP_START = 0x06
OP_STATUS = 0x07
OP_RESULTS = 0x08  # protocol 2 only

#: argument bytes after the opcode (burst data of WRITE_D / WRITE_S follows the arguments)
ARG_BYTES = {
    OP_NOP: 0, OP_INFO: 0, OP_WRITE_D: 4, OP_WRITE_S: 4, OP_READ_C: 4, OP_SET_SHAPE: 8,
    OP_START: 0, OP_STATUS: 0, OP_RESULTS: 0,
}

ST_OK = 0x00
ERR_OPCODE = 0x80
ERR_BUSY = 0x81
ERR_RANGE = 0x82
ERR_TIMEOUT = 0x83

#: reply lengths including the status byte
INFO_BYTES = 18
STATUS_BYTES = 19
