"""The bounds on what b2ckeys accepts, each with the reason for its value.

Every size limit is checked before any parsing, so hostile input costs little.
"""

# 16 PEM certificates with 4096-bit keys take ~32 KB; real chains are 2-4 certificates.
MAX_CERTIFICATE_BYTES = 64 * 1024
# ca.crt may be a trust bundle rather than one CA; ~150 public roots are ~220 KB. It is only
# searched for the issuers the chain still lacks.
MAX_CA_BUNDLE_BYTES = 256 * 1024
# A 4096-bit RSA key in PEM is ~3.3 KB; 16 KiB leaves room for comments around the block.
MAX_PRIVATE_KEY_BYTES = 16 * 1024
# A PFX with a 4096-bit key and a 16-certificate chain is ~30 KB.
MAX_PKCS12_BYTES = 64 * 1024
# Keystore passwords are typed or generated (cert-manager: 32 chars); 1 KiB is generous.
MAX_PASSWORD_BYTES = 1024
# Client secrets are ~40 chars; a PEM key pasted as a secret (an Apple .p8) is ~250 bytes.
MAX_STRING_SECRET_BYTES = 8 * 1024
# Chains are 2-4 deep; 16 leaves room for cross-signs and bounds the pairwise linking work.
MAX_CHAIN_CERTIFICATES = 16
# Bounds the certificates parsed from a ca.crt trust bundle (see MAX_CA_BUNDLE_BYTES).
MAX_CA_CERTIFICATES = 256

# B2C refuses shorter RSA keys (AADB2C90137); 2048 is the floor it is known to accept.
MIN_RSA_BITS = 2048
# Validating a private key costs ~0.2 s at 4096 bits and ~4 s at 8192 bits per load, paid on
# every reconcile; nothing B2C signs or decrypts needs more than 4096.
MAX_RSA_BITS = 4096
