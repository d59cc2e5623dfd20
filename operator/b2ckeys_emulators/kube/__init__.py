"""The Kubernetes API emulator: kmock's KubernetesEmulator with the semantics Kopf relies on."""
