-- Argo CD health of a b2ckeys.dev ClusterB2CTenant: whether the operator could use its
-- credentials (a read call to Microsoft Graph). Lua 5.1 with only what Argo CD opens for
-- argocd-cm customisations (no string library).
--   Progressing  no status yet, the current generation not yet observed, or Ready not set yet
--   Healthy      Ready=True for the current generation
--   Degraded     anything else, with the Ready condition's message (what to do)
local hs = {}

local function readyCondition(status)
  if status == nil or status.conditions == nil then
    return nil
  end
  for _, condition in ipairs(status.conditions) do
    if condition.type == "Ready" then
      return condition
    end
  end
  return nil
end

if obj.status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to verify the credentials"
  return hs
end

local ready = readyCondition(obj.status)
if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition"
  return hs
end

-- The status's observedGeneration, else the condition's: either says which spec was checked.
local observed = obj.status.observedGeneration
if observed == nil then
  observed = ready.observedGeneration
end
local generation = obj.metadata.generation
if generation ~= nil and observed ~= generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. generation
  return hs
end

if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message
  return hs
end

hs.status = "Degraded"
hs.message = ready.message
return hs
