"""b2ckeys: keep Azure AD B2C IEF policy keys in sync with Kubernetes Secrets."""

__version__ = "0.1.0"
