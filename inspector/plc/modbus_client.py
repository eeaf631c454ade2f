"""`PlcClient`: a PLC's side of the handshake over Modbus TCP (tests, benchmarks, commissioning)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Self

from inspector.plc.modbus_map import BY_NAME, SIZE, Command, CommandStatus


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

    def __enter__(self) -> Self:
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
        """One handshake: clear a stale one, write ``command_arg`` and ``command``, wait for the answer, clear.

        The answer counts only when it is bound to this command: ``command_status`` done with
        ``command_ack`` and ``ack_arg`` echoing code and argument, or refused with ``ack_arg``
        echoing the argument. A handshake another client left uncleared (it vanished before
        writing 0) is cleared first, so its acknowledgement never answers this command.

        Returns:
            0 when carried out, else the error code that refused it (``command_error``).

        Raises:
            TimeoutError: No answer bound to this command within ``timeout``.
        """
        code = int(cmd) & 0xFFFF
        arg &= 0xFFFFFFFF
        command_addr = BY_NAME["command"].address
        end = time.monotonic() + timeout
        regs = self.registers()
        if regs["command"] or regs["command_status"] != CommandStatus.IDLE:
            self._write(command_addr, [0])
            regs = self._wait(lambda r: r["command_status"] == CommandStatus.IDLE, end, "clearing the last command")
        self._write(BY_NAME["command_arg"].address, [(arg >> 16) & 0xFFFF, arg & 0xFFFF])
        self._write(command_addr, [code])

        def answered(r: dict[str, int]) -> bool:
            if r["command"] != code or r["ack_arg"] != arg:
                return False
            if r["command_status"] == CommandStatus.DONE:
                return r["command_ack"] == code
            return r["command_status"] == CommandStatus.REFUSED

        regs = self._wait(answered, end, f"command {code}({arg}): no answer")
        self._write(command_addr, [0])
        if regs["command_status"] == CommandStatus.DONE:
            return 0
        return regs["command_error"] or regs["error_code"]  # command_error: this command's, never a FIFO overflow

    def _write(self, address: int, values: list[int]) -> None:
        rr = self.client.write_registers(address, values)
        if rr.isError():
            raise ConnectionError(f"write at {address} failed: {rr}")

    def _wait(self, done: Callable[[dict[str, int]], bool], end: float, what: str) -> dict[str, int]:
        while True:
            regs = self.registers()
            if done(regs):
                return regs
            if time.monotonic() >= end:
                raise TimeoutError(f"{what} in time")
            time.sleep(0.002)
