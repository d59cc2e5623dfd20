"""The B2C key set and Entra token emulator: an HTTPS server following graph-keysets-spec.md."""
