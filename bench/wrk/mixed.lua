-- 95% GET /prices/{asset} and 5% POST /refresh/{asset} over the 20 hot assets (first rows of
-- symbols.csv, whose path is the first script argument).
local hot = {}

init = function(args)
  for line in io.lines(args[1] or "symbols.csv") do
    if line ~= "symbol" and line ~= "" then hot[#hot + 1] = line end
    if #hot == 20 then break end
  end
  math.randomseed(os.time() + tonumber(tostring({}):sub(8), 16))
end

request = function()
  local asset = hot[math.random(#hot)]
  if math.random(100) <= 5 then
    return wrk.format("POST", "/refresh/" .. asset)
  end
  return wrk.format("GET", "/prices/" .. asset)
end

dofile(debug.getinfo(1, "S").source:sub(2):gsub("mixed%.lua$", "report.lua"))
