-- wrk script: GET recommendations (k=20, pool all) for random CiteULike users.
-- wrk -t2 -c50 -d20s --latency -s bench/wrk_recommendations.lua http://127.0.0.1:8000
math.randomseed(7)
request = function()
  return wrk.format("GET", "/v1/users/" .. math.random(0, 5550) .. "/recommendations?k=20")
end
