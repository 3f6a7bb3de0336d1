-- wrk script for every benchmark scenario. Settings come from the environment:
--   BENCH_SCENARIO  get | list | post | patch | mix | ready | live
--   BENCH_ID_MIN, BENCH_ID_MAX  the seeded ids that GET and PATCH pick from, uniformly
--   BENCH_TAG       a prefix that makes POSTed names unique to this run
--   BENCH_API_KEY   if set, every request carries `Authorization: Bearer <it>` (ours needs a key)
-- The mix is 70% GET /items/<id>, 15% GET /items?limit=20, 10% PATCH, 5% POST.
-- At the end one line "BENCH_RESULT {json}" carries the counts and latencies.

local scenario = os.getenv("BENCH_SCENARIO") or "get"
local id_min = tonumber(os.getenv("BENCH_ID_MIN") or "1")
local id_max = tonumber(os.getenv("BENCH_ID_MAX") or "10000")
local tag = os.getenv("BENCH_TAG") or ("bench-" .. os.time())
local api_key = os.getenv("BENCH_API_KEY") or ""

-- A new header table per kind of request (wrk.format adds Host and Content-Length to it).
local function headers(extra)
   local h = {}
   if api_key ~= "" then h["Authorization"] = "Bearer " .. api_key end
   for name, value in pairs(extra or {}) do h[name] = value end
   return h
end

local plain_headers = headers()
local json_headers = headers({ ["Content-Type"] = "application/json" })
local threads = {}
local counter = 0

function setup(thread)
   table.insert(threads, thread)
   thread:set("tid", #threads)
end

function init(args)
   math.randomseed(os.time() * 1000 + (tid or 0))
end

local function get_item()
   return wrk.format("GET", "/items/" .. math.random(id_min, id_max), plain_headers)
end

local function list_items()
   return wrk.format("GET", "/items?limit=20", plain_headers)
end

local function post_item()
   counter = counter + 1
   local body = string.format(
      '{"name":"%s-%d-%d","description":"made by the benchmark","price":%d.%02d,"quantity":%d}',
      tag, tid or 0, counter, math.random(1, 999), math.random(0, 99), math.random(0, 1000))
   return wrk.format("POST", "/items", json_headers, body)
end

local function patch_item()
   local body = string.format('{"quantity":%d}', math.random(0, 100000))
   return wrk.format("PATCH", "/items/" .. math.random(id_min, id_max), json_headers, body)
end

local function mix()
   local r = math.random(100)
   if r <= 70 then return get_item() end
   if r <= 85 then return list_items() end
   if r <= 95 then return patch_item() end
   return post_item()
end

local function ready()
   return wrk.format("GET", "/health/ready", plain_headers)
end

local function live()
   return wrk.format("GET", "/health/live", plain_headers)
end

local scenarios = { get = get_item, list = list_items, post = post_item, patch = patch_item, mix = mix,
                    ready = ready, live = live }
local make = scenarios[scenario] or error("unknown BENCH_SCENARIO " .. scenario)

function request()
   return make()
end

function done(summary, latency, requests)
   io.write(string.format(
      'BENCH_RESULT {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,' ..
      '"status":%d,"timeout":%d,"p50_us":%d,"p90_us":%d,"p99_us":%d,"max_us":%d,"mean_us":%.1f}\n',
      summary.requests, summary.duration, summary.bytes, summary.errors.connect, summary.errors.read,
      summary.errors.write, summary.errors.status, summary.errors.timeout,
      latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
