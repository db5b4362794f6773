-- Paces wrk: each connection waits PACE_MS milliseconds after a response before it sends
-- the next request, so a fixed number of connections offers a steady load below
-- saturation. (wrk2's constant rate is not packaged; wrk measures latency from send to
-- response, so the pause is not counted in it.)
local pause = tonumber(os.getenv("PACE_MS") or "1")

function delay()
  return pause
end
