package account

// EncodeEvent lets black-box tests write events as another writer would.
var EncodeEvent = encodeEvent
