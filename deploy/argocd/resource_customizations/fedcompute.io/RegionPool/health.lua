-- Argo CD health of a fedcompute.io RegionPool (see docs/install.md).
--   Progressing  being deleted; no status yet; an older generation observed;
--                Reconciling=True (claimed providers waiting for a collection);
--                or Ready absent/Unknown
--   Degraded     Stalled=True (an invalid spec, a status write the API server refused),
--                or Ready=False: fewer Ready providers than spec.minReadyProviders
--   Suspended    Ready=True, but spec.paused: the pool's nodes are not updated
--   Healthy      Ready=True for the current generation. A pool that is Ready while its
--                Degraded condition is True (some providers down, yet at least
--                minReadyProviders Ready) stays Healthy and says so in the message: it
--                serves at the level its spec asks for, and each provider that is down
--                reports Degraded itself.
-- Plain Lua 5.1 using only the base and table libraries, which is all Argo CD opens for a
-- health script unless resource.customizations.useOpenLibs is set: no string.format.
local hs = {}

local function find(conditions, wanted)
  if type(conditions) ~= "table" then
    return nil
  end
  for _, c in ipairs(conditions) do
    if type(c) == "table" and c.type == wanted then
      return c
    end
  end
  return nil
end

local function describe(c)
  local text = tostring(c.reason or "")
  if c.message ~= nil and c.message ~= "" then
    if text ~= "" then
      text = text .. ": "
    end
    text = text .. tostring(c.message)
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
if type(status) ~= "table" or status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to report status"
  return hs
end
if older(status.observedGeneration, generation) then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(generation)
  return hs
end

local stalled = find(status.conditions, "Stalled")
if stalled ~= nil and stalled.status == "True" then
  hs.status = "Degraded"
  hs.message = describe(stalled)
  return hs
end
local reconciling = find(status.conditions, "Reconciling")
if reconciling ~= nil and reconciling.status == "True" then
  hs.status = "Progressing"
  hs.message = describe(reconciling)
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
  hs.message = "Ready describes generation " .. tostring(ready.observedGeneration)
    .. ", not " .. tostring(generation)
  return hs
end
if ready.status == "False" then
  hs.status = "Degraded"
  hs.message = describe(ready)
  return hs
end
if ready.status == "True" then
  if type(obj.spec) == "table" and obj.spec.paused == true then
    hs.status = "Suspended"
    hs.message = "Paused: the pool keeps its claims but its nodes are not updated"
    return hs
  end
  hs.status = "Healthy"
  hs.message = describe(ready)
  local degraded = find(status.conditions, "Degraded")
  if degraded ~= nil and degraded.status == "True" then
    hs.message = hs.message .. "; degraded: " .. describe(degraded)
  end
  return hs
end
hs.status = "Progressing"
hs.message = "Ready is " .. tostring(ready.status) .. ": " .. describe(ready)
return hs
