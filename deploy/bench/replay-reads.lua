-- Drives wrk through a fixed number of item reads, GET /items/0 .. /items/READS-1. Each of
-- the WRK_THREADS threads reads every WRK_THREADS-th item; once it has its share of answers
-- it stops and leaves a file named after it in DONE_DIR. wrk itself only knows durations, so
-- replay.sh sends it SIGINT once every thread's file is there; the requests still in flight
-- by then may add a few more, which `shadowctl record --limit` leaves out.
local next_first = 0

function setup(thread)
  thread:set("first", next_first)
  next_first = next_first + 1
end

function init(args)
  step = tonumber(os.getenv("WRK_THREADS") or "1")
  quota = math.ceil(tonumber(os.getenv("READS") or "1000") / step)
  done_dir = os.getenv("DONE_DIR")
  sent = 0
  answered = 0
end

function request()
  local n = first + sent * step
  sent = sent + 1
  return wrk.format("GET", "/items/" .. n)
end

function response(status, headers, body)
  answered = answered + 1
  if answered == quota then
    if done_dir then
      local f = io.open(done_dir .. "/thread-" .. first, "w")
      if f then f:close() end
    end
    wrk.thread:stop()
  end
end
