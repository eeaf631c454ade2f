"""Plant-level sinks: where a plant's data platform gets the station's results (MQTT)."""
