-- Switch to Observe mode: the operator keeps reading B2C, reports drift and lists in
-- status.plan what Sync mode would write, but writes nothing to B2C.
obj.spec.mode = "Observe"
return obj
