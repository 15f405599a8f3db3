package placement

// NumSlots is the number of hash slots. Every key belongs to exactly one.
const NumSlots = 16384

// crc16Table is the table of CRC-16/ARC (the "IBM" CRC: polynomial 0x8005,
// reflected as 0xA001, initial value 0, no final xor).
var crc16Table = func() (t [256]uint16) {
	for i := range t {
		c := uint16(i)
		for range 8 {
			if c&1 != 0 {
				c = c>>1 ^ 0xA001
			} else {
				c >>= 1
			}
		}
		t[i] = c
	}
	return t
}()

// CRC16 returns the CRC-16/ARC checksum of b. Its check value, for
// "123456789", is 0xBB3D. This is the checksum the original go-ds-cluster
// used for slots; changing it would move every key.
func CRC16(b []byte) uint16 {
	var c uint16
	for _, x := range b {
		c = c>>8 ^ crc16Table[byte(c)^x]
	}
	return c
}

// Slot returns the hash slot of key: CRC16(key) mod NumSlots.
func Slot(key string) uint16 {
	var c uint16
	for i := 0; i < len(key); i++ {
		c = c>>8 ^ crc16Table[byte(c)^key[i]]
	}
	return c % NumSlots
}
