"""The PLC side of a station: the Modbus TCP and OPC UA servers, result FIFO, commands."""
