package dscluster

// CheckCID is checkCID, for the external tests' benchmark.
var CheckCID = checkCID
