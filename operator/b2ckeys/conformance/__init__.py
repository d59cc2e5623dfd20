"""`b2ckeys conformance`: check, on a real tenant, the B2C key set rules the operator relies on.

`catalogue` is the one list of rules (each with the emulator's default observation and the
`EmulatorRules` fields encoding it), `checks_*` observe each rule through `probe`, `runner`
orders them, guards the prefix and cleans up, and `report` prints the table or JSON.
"""
