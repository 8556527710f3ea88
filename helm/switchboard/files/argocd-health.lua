-- Argo CD health for switchboard.dev CustomProvider, AccessKeyConfig and Agent.
-- resource.customizations.health.switchboard.dev_CustomProvider (and _AccessKeyConfig, _Agent)
hs = {}
if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Switchboard operator"
  return hs
end
if obj.metadata.generation ~= nil and obj.status.observedGeneration ~= obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "The operator has not processed the latest change yet"
  return hs
end
for _, condition in ipairs(obj.status.conditions) do
  if condition.type == "Ready" then
    if condition.status == "True" then
      hs.status = "Healthy"
    else
      hs.status = "Degraded"
    end
    hs.message = condition.message
    return hs
  end
end
hs.status = "Progressing"
hs.message = "No Ready condition yet"
return hs
