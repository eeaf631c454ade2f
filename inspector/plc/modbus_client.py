"""`PlcClient`: a PLC's side of the handshake over Modbus TCP (tests, benchmarks, commissioning)."""

from __future__ import annotations

import time
from typing import Any

from inspector.plc.modbus_map import BY_NAME, SIZE, Command


class PlcClient:
    """Reads registers by name and sends commands with the station's handshake.

    Args:
        host, port: The station's Modbus server.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 5020, timeout: float = 3.0) -> None:
        from pymodbus.client import ModbusTcpClient

        self.client: Any = ModbusTcpClient(host, port=port, timeout=timeout)
        if not self.client.connect():
            raise ConnectionError(f"cannot connect to Modbus server {host}:{port}")

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> PlcClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def registers(self) -> dict[str, int]:
        """Every register of the map, by name (one read)."""
        rr = self.client.read_holding_registers(0, count=SIZE)
        if rr.isError():
            raise ConnectionError(f"read failed: {rr}")
        regs = rr.registers
        out = {}
        for name, r in BY_NAME.items():
            out[name] = (regs[r.address] << 16 | regs[r.address + 1]) if r.words == 2 else regs[r.address]
        return out

    def read(self, name: str) -> int:
        r = BY_NAME[name]
        rr = self.client.read_holding_registers(r.address, count=r.words)
        if rr.isError():
            raise ConnectionError(f"read {name} failed: {rr}")
        v = rr.registers
        return (v[0] << 16 | v[1]) if r.words == 2 else v[0]

    def write_raw(self, address: int, values: list[int]) -> Any:
        return self.client.write_registers(address, values)

    def command(self, cmd: Command | int, arg: int = 0, timeout: float = 2.0) -> int:
        """Write ``command_arg`` and ``command``, wait for ``command_ack`` (or an error), clear.

        Returns:
            ``error_code`` after the command (0: carried out).
        """
        code = int(cmd)
        arg_addr = BY_NAME["command_arg"].address
        self.client.write_registers(arg_addr, [(arg >> 16) & 0xFFFF, arg & 0xFFFF])
        self.client.write_register(BY_NAME["command"].address, code)
        end = time.monotonic() + timeout
        error = 0
        while time.monotonic() < end:
            regs = self.registers()
            if regs["command_ack"] == code:
                break
            if regs["error_code"]:
                error = regs["error_code"]
                break
            time.sleep(0.002)
        else:
            raise TimeoutError(f"command {code}: no command_ack within {timeout} s")
        self.client.write_register(BY_NAME["command"].address, 0)
        return error or self.read("error_code")
