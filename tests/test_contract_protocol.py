"""hw.contract.protocol: one table of the bridge's numbers, and the host side free of Amaranth."""

import subprocess
import sys
import textwrap

from hw.contract import protocol as P


def test_every_opcode_has_its_argument_length_and_opcodes_are_distinct():
    ops = {n: v for n, v in vars(P).items() if n.startswith("OP_")}
    assert len(set(ops.values())) == len(ops)
    assert set(P.ARG_BYTES) == set(ops.values())


def test_status_bytes_are_distinct_and_errors_have_the_top_bit():
    errors = {n: v for n, v in vars(P).items() if n.startswith("ERR_")}
    assert len(set(errors.values())) == len(errors)
    assert all(v & 0x80 for v in errors.values()) and not P.ST_OK & 0x80


def test_bridge_reexports_the_same_numbers():
    from hw import host_bridge

    for name in P.__all__:
        assert getattr(host_bridge, name) is getattr(P, name), name


def test_contract_and_host_driver_import_without_amaranth_or_torch():
    code = textwrap.dedent("""
        import sys
        class Block:
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("amaranth", "torch"):
                    raise ImportError("blocked: " + name)
        sys.meta_path.insert(0, Block())
        import hw.contract.blob, hw.contract.codes, hw.contract.cycles, hw.contract.malformed
        import hw.contract.protocol, hw.contract.tiling, hw.contract.words
        import hw.host_driver
        print("ok")
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr.strip().splitlines()[-1:]
    assert out.stdout.strip() == "ok"
