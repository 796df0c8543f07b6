package persistence

import "hash/fnv"

// PartitionOf maps a stream name onto [0, partitions) with FNV-1a, so every
// backend and every member agree on where a stream lives. The mapping must
// never change once data is written.
func PartitionOf(stream string, partitions int) int {
	if partitions <= 1 {
		return 0
	}
	h := fnv.New32a()
	_, _ = h.Write([]byte(stream))
	return int(h.Sum32() % uint32(partitions))
}
