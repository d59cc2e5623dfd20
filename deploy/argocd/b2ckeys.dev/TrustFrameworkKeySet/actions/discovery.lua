-- Argo CD resource actions of a b2ckeys.dev TrustFrameworkKeySet. Lua 5.1, base library only.
--   sync-now  reconcile at once (the operator watches the b2ckeys.dev/force-sync annotation);
--             also useful in Observe mode, where it refreshes the drift report and plan
--   observe   switch to Observe mode: the operator stops writing to B2C (disabled if already)
--   resume    switch back to Sync mode (disabled unless in Observe mode)
-- An unset spec.mode is Sync (the CRD's default).
local actions = {}
local observing = obj.spec ~= nil and obj.spec.mode == "Observe"
actions["sync-now"] = {
  ["iconClass"] = "fa fa-fw fa-sync",
  ["displayName"] = "Sync now",
}
actions["observe"] = {
  ["disabled"] = observing,
  ["iconClass"] = "fa fa-fw fa-pause",
  ["displayName"] = "Observe (stop writing to B2C)",
}
actions["resume"] = {
  ["disabled"] = not observing,
  ["iconClass"] = "fa fa-fw fa-play",
  ["displayName"] = "Resume syncing to B2C",
}
return actions
