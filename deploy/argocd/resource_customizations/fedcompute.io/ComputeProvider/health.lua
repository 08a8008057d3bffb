-- Argo CD health of a fedcompute.io ComputeProvider (see docs/install.md).
--   Progressing  no status yet, an older generation observed, or Ready absent/Unknown
--   Degraded     Ready=False (Stale, Unreachable, SecretNotFound, InsecureKubeconfig, ...)
--   Suspended    Ready=True, but spec.unschedulable: the provider offers nothing to pools
--   Healthy      Ready=True for the current generation
-- Plain Lua 5.1, as Argo CD runs it.
local hs = {}

local function find(conditions, wanted)
  if conditions == nil then
    return nil
  end
  for _, c in ipairs(conditions) do
    if c.type == wanted then
      return c
    end
  end
  return nil
end

local function describe(c)
  local text = c.reason or ""
  if c.message ~= nil and c.message ~= "" then
    if text ~= "" then
      text = text .. ": "
    end
    text = text .. c.message
  end
  return text
end

local function older(observed, generation)
  return generation ~= nil and (observed == nil or observed < generation)
end

local meta = obj.metadata or {}
local generation = meta.generation
local status = obj.status

if meta.deletionTimestamp ~= nil then
  hs.status = "Progressing"
  hs.message = "Being deleted: the operator removes its virtual nodes first"
  return hs
end
if status == nil or status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report status"
  return hs
end
if older(status.observedGeneration, generation) then
  hs.status = "Progressing"
  hs.message = string.format("Waiting for the operator to observe generation %d", generation)
  return hs
end

local ready = find(status.conditions, "Ready")
if ready == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the Ready condition"
  return hs
end
if ready.observedGeneration ~= nil and older(ready.observedGeneration, generation) then
  hs.status = "Progressing"
  hs.message = string.format("Ready describes generation %d, not %d", ready.observedGeneration, generation)
  return hs
end
if ready.status == "False" then
  hs.status = "Degraded"
  hs.message = describe(ready)
  return hs
end
if ready.status == "True" then
  if obj.spec ~= nil and obj.spec.unschedulable == true then
    hs.status = "Suspended"
    hs.message = "Unschedulable: the provider offers nothing to pools"
    return hs
  end
  hs.status = "Healthy"
  hs.message = describe(ready)
  local collected = find(status.conditions, "Collected")
  if collected ~= nil and collected.status == "False" then
    hs.message = hs.message .. "; last collection failed: " .. describe(collected)
  end
  return hs
end
hs.status = "Progressing"
hs.message = "Ready is " .. tostring(ready.status) .. ": " .. describe(ready)
return hs
