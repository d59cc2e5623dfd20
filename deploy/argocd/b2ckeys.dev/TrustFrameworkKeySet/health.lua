-- Argo CD health of a b2ckeys.dev TrustFrameworkKeySet.
-- Lua 5.1 with only what Argo CD opens for argocd-cm customisations (base, table, package and
-- a safe os): no string library, so no string.* and no s:method() calls.
--   Suspended    spec.mode is Observe (the operator only reads B2C and reports drift)
--   Progressing  no status yet, the current generation not yet observed, Ready not set yet,
--                the new key uploaded but not active until its notBefore (PendingActivation),
--                cert-manager's temporary certificate awaiting the real one
--                (AwaitingCertificate),
--                or the resource being deleted
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

local ready = readyCondition(obj.status)

if obj.spec ~= nil and obj.spec.mode == "Observe" then
  hs.status = "Suspended"
  hs.message = "Observe mode: the operator reads B2C but does not write to it"
  if ready ~= nil and ready.message ~= nil and ready.message ~= "" then
    hs.message = hs.message .. "; " .. ready.message
  end
  return hs
end

if obj.status == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report status"
  return hs
end

local generation = obj.metadata.generation
if generation ~= nil and obj.status.observedGeneration ~= generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. generation
  return hs
end

if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition"
  return hs
end

if ready.reason == "PendingActivation" or ready.reason == "Deleting"
  or ready.reason == "AwaitingCertificate" then
  hs.status = "Progressing"
  hs.message = ready.message
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
