-- Ask the operator to reconcile this key set now. Any new value of the annotation triggers it;
-- the current UTC time is one, and says when someone asked (like External Secrets' refresh).
-- Argo CD patches the object with what this returns; the operator never writes the annotation.
local os = require("os")
if obj.metadata.annotations == nil then
  obj.metadata.annotations = {}
end
obj.metadata.annotations["b2ckeys.dev/force-sync"] = os.date("!%Y-%m-%dT%H:%M:%SZ")
return obj
