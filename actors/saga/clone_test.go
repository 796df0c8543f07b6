package saga

import (
	"testing"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"granary/messages"
)

// fill sets every field of m, nested messages and lists included, to a
// value other than its default, so that a copy missing one differs.
func fill(t *testing.T, m protoreflect.Message, depth int) {
	t.Helper()
	if depth > 4 {
		t.Fatalf("%s nests too deep to fill", m.Descriptor().FullName())
	}
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		switch {
		case fd.IsMap():
			t.Fatalf("%s: a map field; fill does not know maps", fd.FullName())
		case fd.IsList() && fd.Kind() == protoreflect.MessageKind:
			l := m.Mutable(fd).List()
			e := l.NewElement()
			fill(t, e.Message(), depth+1)
			l.Append(e)
		case fd.IsList():
			m.Mutable(fd).List().Append(scalar(t, fd))
		case fd.Kind() == protoreflect.MessageKind:
			fill(t, m.Mutable(fd).Message(), depth+1)
		default:
			m.Set(fd, scalar(t, fd))
		}
	}
	var unknown []byte
	unknown = protowire.AppendTag(unknown, 999, protowire.VarintType)
	m.SetUnknown(protowire.AppendVarint(unknown, uint64(depth)+1))
}

func scalar(t *testing.T, fd protoreflect.FieldDescriptor) protoreflect.Value {
	t.Helper()
	n := int64(fd.Number()) + 1
	switch fd.Kind() {
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(string(fd.Name()))
	case protoreflect.BytesKind:
		return protoreflect.ValueOfBytes([]byte(fd.Name()))
	case protoreflect.BoolKind:
		return protoreflect.ValueOfBool(true)
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return protoreflect.ValueOfInt64(n)
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return protoreflect.ValueOfUint64(uint64(n))
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		return protoreflect.ValueOfInt32(int32(n))
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		return protoreflect.ValueOfUint32(uint32(n))
	case protoreflect.EnumKind:
		return protoreflect.ValueOfEnum(1)
	case protoreflect.DoubleKind:
		return protoreflect.ValueOfFloat64(float64(n))
	case protoreflect.FloatKind:
		return protoreflect.ValueOfFloat32(float32(n))
	}
	t.Fatalf("%s: kind %v; fill does not know it", fd.FullName(), fd.Kind())
	return protoreflect.Value{}
}

func TestCloneStateCopiesEveryField(t *testing.T) {
	s := &messages.SagaState{}
	fill(t, s.ProtoReflect(), 0)
	orig := proto.Clone(s)
	c := cloneState(s)
	if !proto.Equal(c, s) {
		t.Fatalf("clone differs from its original:\n got %v\nwant %v", c, s)
	}
	// What apply changes in the copy stays out of the original.
	c.Steps[0].Status, c.Steps[0].UpdatedAtUnixMs = "changed", -1
	c.UndoUnknown[0] = "changed"
	c.Status = "changed"
	c.ProtoReflect().SetUnknown(nil)
	c.Steps[0].ProtoReflect().SetUnknown(nil)
	if !proto.Equal(s, orig) {
		t.Fatalf("changing the clone changed the original:\n got %v\nwant %v", s, orig)
	}
}
