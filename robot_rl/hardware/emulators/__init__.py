"""Software stand-ins for devices, speaking the devices' real wire protocols (for tests and demos)."""
