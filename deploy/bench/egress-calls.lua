-- One deployment's downstream calls, for egress-tap.sh: `GET /stock/{n}` to the backend at
-- BACKEND (host:port), each with an X-Request-Id of its own, as a deployment calls a
-- dependency while serving requests. With PROXY=1 the request line carries the absolute-form
-- target (`GET http://BACKEND/stock/7`) that an HTTP proxy gets, and wrk's URL is the proxy's;
-- else the origin-form target wrk would send the backend directly.
--
-- Each connection waits PACE_MS milliseconds after a response before its next call, so a
-- fixed number of connections offers a steady, modest load (see paced.lua). Request ids are
-- ID_PREFIX-t{thread}-{n}: a run with the same prefix sends the same ids in the same order,
-- which is how a stub tap, answering from a primary's recorded calls, gets calls it has
-- recordings for. With LIMITS_IN (one "thread count" line per thread, as SENT_OUT wrote
-- them) a thread stops before it sends an id past that count. done() prints one line,
-- "RESULT key=value ...", with latencies in microseconds.
local backend = assert(os.getenv("BACKEND"), "BACKEND (host:port) is required")
local proxy = os.getenv("PROXY") == "1"
local pause = tonumber(os.getenv("PACE_MS") or "4")
local prefix = os.getenv("ID_PREFIX") or "call"
local target = proxy and ("http://" .. backend) or ""

local threads = {}

-- Per thread: its number is set by setup(), before init().
sent = 0
received = 0
non2xx = 0
limit = nil

local function read_limits(path)
  local limits = {}
  local file = assert(io.open(path, "r"))
  for line in file:lines() do
    local thread, count = line:match("^(%d+) (%d+)$")
    if thread then limits[tonumber(thread)] = tonumber(count) end
  end
  file:close()
  return limits
end

function setup(thread)
  table.insert(threads, thread)
  thread:set("tid", #threads)
  local limits_in = os.getenv("LIMITS_IN")
  if limits_in and limits_in ~= "" then
    thread:set("limit", read_limits(limits_in)[#threads] or 0)
  end
end

function request()
  if limit and sent >= limit then
    -- Out of recorded ids: stop this thread. The call below is built but not counted.
    wrk.thread:stop()
  end
  sent = sent + 1
  local headers = { ["Host"] = backend, ["X-Request-Id"] = prefix .. "-t" .. tid .. "-" .. sent }
  return wrk.format("GET", target .. "/stock/" .. sent, headers)
end

function response(status)
  received = received + 1
  if status < 200 or status > 299 then non2xx = non2xx + 1 end
end

function delay()
  return pause
end

function done(summary, latency)
  -- Answers received per thread: the calls a proxy finished, and so published.
  local sent_out = os.getenv("SENT_OUT")
  if sent_out and sent_out ~= "" then
    local file = assert(io.open(sent_out, "w"))
    for i, thread in ipairs(threads) do file:write(i, " ", thread:get("received"), "\n") end
    file:close()
  end
  local bad = 0
  for _, thread in ipairs(threads) do bad = bad + thread:get("non2xx") end
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d seconds=%.3f p50=%d p90=%d p99=%d p999=%d max=%d non2xx=%d socket_errors=%d\n",
    summary.requests, summary.duration / 1e6, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency:percentile(99.9), latency.max, bad,
    e.connect + e.read + e.write + e.timeout))
end
