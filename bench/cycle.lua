-- wrk script for Terraform's write cycle: LOCK, POST ?ID=<lock id>, UNLOCK, repeated.
--
-- Run it with as many threads as connections (wrk -tN -cN). wrk keeps one Lua state per
-- thread, and with a single connection per thread the step counter below belongs to exactly
-- one connection, so a connection never sends its POST before its LOCK was answered.
-- Each connection works on its own workspace (BENCH_PREFIX .. thread number), the way
-- separate Terraform runs on separate workspaces do, so cycles do not contend for one lock.
--
--   BENCH_PREFIX  path prefix of the workspaces, e.g. /state/bench/cycle-
--   BENCH_BODY    a small state document; its "serial" is raised by one each cycle
--   BENCH_AUTH    value of the Authorization header
--
-- Every answer is expected to be 200. Anything else is counted, and the connection
-- force-unlocks (UNLOCK with an empty body) before starting its next cycle.

dofile((debug.getinfo(1, "S").source:sub(2):match("^(.*/)") or "./") .. "report.lua")

local ffi = require("ffi")
ffi.cdef [[
   typedef struct { long tv_sec; long tv_nsec; } bench_timespec;
   int clock_gettime(int clock_id, bench_timespec *tp);
]]
local CLOCK_MONOTONIC = 1
local ts = ffi.new("bench_timespec")

local function now_us()
   ffi.C.clock_gettime(CLOCK_MONOTONIC, ts)
   return tonumber(ts.tv_sec) * 1000000 + math.floor(tonumber(ts.tv_nsec) / 1000)
end

-- Main state: number the threads and keep them for done().
local threads = {}

function setup(thread)
   table.insert(threads, thread)
   thread:set("id", #threads)
end

-- Thread state.
local path, headers, state_template
local step, lock_id, lock_body, serial, started

local function uuid()
   local b = {}
   for i = 1, 16 do b[i] = math.random(0, 255) end
   b[7] = 0x40 + b[7] % 16
   b[9] = 0x80 + b[9] % 64
   return string.format("%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
      unpack(b))
end

function init(args)
   math.randomseed(id * 1000003 + os.time())
   path = os.getenv("BENCH_PREFIX") .. id
   headers = { ["Content-Type"] = "application/json" }
   local auth = os.getenv("BENCH_AUTH")
   if auth and auth ~= "" then
      headers["Authorization"] = auth
   end
   local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
   state_template = f:read("*a")
   f:close()
   assert(state_template:find('"serial": %d+'), "BENCH_BODY has no serial")
   step, serial = 1, 0
   -- Read back by done() through thread:get.
   cycles, failures, statuses, samples, first_failure = 0, 0, {}, {}, nil
end

function request()
   if step == 1 then
      lock_id = uuid()
      lock_body = string.format(
         '{"ID":"%s","Operation":"OperationTypeApply","Info":"","Who":"bench@terrace",' ..
         '"Version":"1.0.3","Created":"%s","Path":""}',
         lock_id, os.date("!%Y-%m-%dT%H:%M:%SZ"))
      started = now_us()
      return wrk.format("LOCK", path, headers, lock_body)
   elseif step == 2 then
      serial = serial + 1
      local body = state_template:gsub('"serial": %d+', '"serial": ' .. serial, 1)
      return wrk.format("POST", path .. "?ID=" .. lock_id, headers, body)
   else
      return wrk.format("UNLOCK", path, headers, lock_body)
   end
end

local step_names = { "LOCK", "POST", "UNLOCK" }

function response(status, hdrs, body)
   if status ~= 200 then
      failures = failures + 1
      local key = step_names[step] .. " " .. status
      statuses[key] = (statuses[key] or 0) + 1
      if not first_failure then
         first_failure = key .. ": " .. (body or ""):sub(1, 300)
      end
      if step == 3 and lock_body == "" then
         step = 1 -- even the force-unlock failed; start over
      else
         lock_body = "" -- force-unlock, then start a fresh cycle
         step = 3
      end
      return
   end
   if step == 3 then
      if lock_body ~= "" then
         cycles = cycles + 1
         samples[#samples + 1] = now_us() - started
      end
      step = 1
   else
      step = step + 1
   end
end

function done(summary, latency, requests)
   local total, failed, all, by_status, first = 0, 0, {}, {}, nil
   for _, t in ipairs(threads) do
      total = total + (t:get("cycles") or 0)
      failed = failed + (t:get("failures") or 0)
      for _, v in ipairs(t:get("samples") or {}) do all[#all + 1] = v end
      for k, v in pairs(t:get("statuses") or {}) do by_status[k] = (by_status[k] or 0) + v end
      first = first or t:get("first_failure")
   end
   table.sort(all)
   local function pct(p)
      if #all == 0 then return 0 end
      return all[math.max(1, math.ceil(#all * p / 100))]
   end
   local parts = {}
   for k, v in pairs(by_status) do parts[#parts + 1] = (k:gsub(" ", ":")) .. "=" .. v end
   report(summary, latency, string.format(
      " cycles=%d failures=%d cycle_p50_us=%d cycle_p99_us=%d failed_steps=%s",
      total, failed, pct(50), pct(99), #parts > 0 and table.concat(parts, ",") or "none"))
   if first then
      io.write("FIRST_FAILURE " .. first:gsub("\n", " ") .. "\n")
   end
end
