-- Argo CD health check for switchboard.dev CustomProvider, AccessKeyConfig and Agent.
-- argocd-cm keys: resource.customizations.health.switchboard.dev_CustomProvider,
-- ..._AccessKeyConfig and ..._Agent (the same script for all three).
--   Progressing: no status yet, observedGeneration behind metadata.generation, no Ready
--                condition, Ready=Unknown, or Ready=False only because the routing Secret
--                is not written yet (reason NotPublished).
--   Healthy:     Ready=True for the current generation.
--   Degraded:    Ready=False (the message names the field and the fix), or Stalled=True.
local hs = {status = "Progressing", message = "Waiting for the Switchboard operator"}
if obj.status == nil or obj.status.conditions == nil or #obj.status.conditions == 0 then
  return hs
end
local generation = obj.metadata.generation
local observed = obj.status.observedGeneration
if generation ~= nil and (observed == nil or observed < generation) then
  hs.message = "The operator has not processed generation " .. tostring(generation) .. " yet"
  return hs
end
local ready = nil
for _, condition in ipairs(obj.status.conditions) do
  if condition.type == "Stalled" and condition.status == "True" then
    hs.status = "Degraded"
    hs.message = condition.message or condition.reason or "Stalled"
    return hs
  end
  if condition.type == "Ready" then
    ready = condition
  end
end
if ready == nil then
  hs.message = "No Ready condition yet"
  return hs
end
if generation ~= nil and ready.observedGeneration ~= nil and ready.observedGeneration < generation then
  hs.message = "Ready describes generation " .. tostring(ready.observedGeneration)
  return hs
end
local message = ready.message or ready.reason or ""
if ready.status == "True" then
  hs.status = "Healthy"
  hs.message = message
elseif ready.status == "False" and ready.reason ~= "NotPublished" then
  hs.status = "Degraded"
  hs.message = message
else
  hs.message = message
end
return hs
