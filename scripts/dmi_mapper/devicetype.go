// The "virtual" protocol of the DMI check mapper: a device whose properties are numbers
// kept in memory. Replaces the mapper-framework template's driver/devicetype.go.
package driver

import (
	"sync"

	"github.com/kubeedge/kubeedge/dmimapper/pkg/common"
)

// CustomizedDev is one device the mapper serves.
type CustomizedDev struct {
	Instance         common.DeviceInstance
	CustomizedClient *CustomizedClient
}

// CustomizedClient holds a virtual device's property values.
type CustomizedClient struct {
	deviceMutex sync.Mutex
	ProtocolConfig
	values map[string]int64
}

// ProtocolConfig is the Device's spec.protocol.
type ProtocolConfig struct {
	ProtocolName string `json:"protocolName"`
	ConfigData   `json:"configData"`
}

// ConfigData is spec.protocol.configData: the seed makes readings differ per device.
type ConfigData struct {
	Seed int64 `json:"seed"`
}

// VisitorConfig is a property's visitors block.
type VisitorConfig struct {
	ProtocolName      string `json:"protocolName"`
	VisitorConfigData `json:"configData"`
}

// VisitorConfigData names the value slot and bounds the random readings.
type VisitorConfigData struct {
	DataType string `json:"dataType"`
	Register string `json:"register"`
	Min      int64  `json:"min"`
	Max      int64  `json:"max"`
}
