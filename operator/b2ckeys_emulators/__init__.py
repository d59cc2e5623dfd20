"""What stands in for the cloud in tests and `make demo`: a B2C key set + Entra token emulator
(`graph`), a Kubernetes API emulator (`kube`), a dev CA, and the demo. The operator never imports
this package; the runtime image does not ship it."""
