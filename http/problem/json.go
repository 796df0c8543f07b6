package problem

import "encoding/json"

func mustJSON(p Problem) []byte {
	b, err := json.Marshal(p)
	if err != nil {
		// Problem holds only strings and ints: Marshal cannot fail.
		panic(err)
	}
	return b
}
