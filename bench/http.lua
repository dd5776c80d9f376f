-- wrk script for the GET and upload runs, described by the environment:
--   BENCH_METHOD  GET (default), POST or PUT
--   BENCH_BODY    file whose bytes are sent as the body
--   BENCH_SERIAL  1: give every request its own "serial" in the body, so each upload is new
--                 content (a server may treat a repeat of the current bytes as a no-op)
--   BENCH_AUTH    value of the Authorization header, if any
-- No response() callback on purpose: with one, wrk copies every response body.

dofile((debug.getinfo(1, "S").source:sub(2):match("^(.*/)") or "./") .. "report.lua")

wrk.method = os.getenv("BENCH_METHOD") or "GET"

local auth = os.getenv("BENCH_AUTH")
if auth and auth ~= "" then
   wrk.headers["Authorization"] = auth
end

local path = os.getenv("BENCH_BODY")
if path and path ~= "" then
   local f = assert(io.open(path, "rb"))
   wrk.body = f:read("*a")
   f:close()
   wrk.headers["Content-Type"] = "application/json"
end

local threads = 0

function setup(thread)
   threads = threads + 1
   thread:set("id", threads)
end

if os.getenv("BENCH_SERIAL") == "1" then
   -- The body split around its serial once; each request is head .. serial .. tail.
   local s, e = wrk.body:find('"serial": %d+')
   assert(s, "BENCH_BODY has no serial")
   local head, tail = wrk.body:sub(1, s - 1) .. '"serial": ', wrk.body:sub(e + 1)
   local n = 0

   function request()
      n = n + 1
      -- Unique across threads: thread ids are 1..64.
      return wrk.format(nil, nil, nil, head .. (1000 + n * 64 + id) .. tail)
   end
end

function done(summary, latency, requests)
   report(summary, latency)
end
