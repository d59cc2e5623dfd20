-- Switch back to Sync mode: the operator writes to B2C again, starting with what status.plan
-- listed.
obj.spec.mode = "Sync"
return obj
