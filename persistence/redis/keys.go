package redis

import "strconv"

// keys lays out the data of a store. Every key of partition N carries the
// hash tag {pN}, so a partition lives in one Redis Cluster slot and the
// scripts may touch all of its keys:
//
//	<prefix>:{pN}:head           string  decimal count of positions written
//	<prefix>:{pN}:ev             hash    decimal position -> event body
//	<prefix>:{pN}:s:<stream>     list    element i = position of version i+1
//	<prefix>:{pN}:snap:<stream>  hash    v = decimal version, d = data
//	<prefix>:{pN}:dc:<len>:<stream>:<command>  string  a declined command (expires)
//	<prefix>:{pN}:ap:<len>:<stream>:<command>  string  an applied command's version (expires)
//
// Bodies are stored once, in the partition hash; the stream list only
// indexes them. Both reads are O(1) per event: an LRANGE plus HGETs for a
// stream, HGETs by computed position for a partition.
type keys struct{ prefix string }

func (k keys) tag(p int) string { return k.prefix + ":{p" + strconv.Itoa(p) + "}" }

func (k keys) head(p int) string                  { return k.tag(p) + ":head" }
func (k keys) events(p int) string                { return k.tag(p) + ":ev" }
func (k keys) stream(p int, stream string) string { return k.tag(p) + ":s:" + stream }
func (k keys) snapshot(p int, stream string) string {
	return k.tag(p) + ":snap:" + stream
}

// declined spells the stream's length so that no stream and command pair
// can name another pair's key.
func (k keys) declined(p int, stream, command string) string {
	return k.tag(p) + ":dc:" + strconv.Itoa(len(stream)) + ":" + stream + ":" + command
}

func (k keys) applied(p int, stream, command string) string {
	return k.tag(p) + ":ap:" + strconv.Itoa(len(stream)) + ":" + stream + ":" + command
}
