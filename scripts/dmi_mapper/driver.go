// Reads return the value last written to the slot, else a random number in [min, max];
// every write is logged on one line ("virtual-set ...") so a check can time desired values.
package driver

import (
	"fmt"
	"math/rand"
	"strconv"
	"sync"
	"time"

	"k8s.io/klog/v2"
)

// NewClient makes the in-memory device.
func NewClient(protocol ProtocolConfig) (*CustomizedClient, error) {
	return &CustomizedClient{
		ProtocolConfig: protocol,
		deviceMutex:    sync.Mutex{},
		values:         map[string]int64{},
	}, nil
}

// InitDevice has nothing to open.
func (c *CustomizedClient) InitDevice() error { return nil }

func slot(visitor *VisitorConfig) string {
	if visitor.Register != "" {
		return visitor.Register
	}
	return "value"
}

// GetDeviceData reads a slot.
func (c *CustomizedClient) GetDeviceData(visitor *VisitorConfig) (interface{}, error) {
	c.deviceMutex.Lock()
	defer c.deviceMutex.Unlock()
	if v, ok := c.values[slot(visitor)]; ok {
		return v, nil
	}
	lo, hi := visitor.Min, visitor.Max
	if hi <= lo {
		hi = lo + 100
	}
	return lo + rand.Int63n(hi-lo+1), nil
}

// SetDeviceData writes a slot (the desired value edgecore handed the mapper).
func (c *CustomizedClient) SetDeviceData(data interface{}, visitor *VisitorConfig) error {
	var v int64
	switch d := data.(type) {
	case int64:
		v = d
	case int:
		v = int64(d)
	case float64:
		v = int64(d)
	case float32:
		v = int64(d)
	case string:
		if d == "" {
			return nil // no desired value yet
		}
		p, err := strconv.ParseInt(d, 10, 64)
		if err != nil {
			return fmt.Errorf("virtual: %q is not a number", d)
		}
		v = p
	default:
		return fmt.Errorf("virtual: cannot set %T", data)
	}
	c.deviceMutex.Lock()
	c.values[slot(visitor)] = v
	c.deviceMutex.Unlock()
	klog.Infof("virtual-set slot=%s value=%d unix_ns=%d", slot(visitor), v, time.Now().UnixNano())
	return nil
}

// StopDevice has nothing to close.
func (c *CustomizedClient) StopDevice() error { return nil }
