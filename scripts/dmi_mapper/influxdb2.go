// Stand-in for the template's InfluxDB sink: influxdb-client-go is not in KubeEdge's
// vendor/ tree, so this offline build leaves the database push out and says so.
package influxdb2

import (
	"encoding/json"
	"errors"

	"github.com/kubeedge/kubeedge/dmimapper/pkg/common"
)

// Client is what InitDbClient returns; nothing is connected.
type Client struct{}

// DataBaseConfig matches the template's type.
type DataBaseConfig struct{}

// NewDataBaseClient refuses: the sink is not part of this build.
func NewDataBaseClient(clientConfig json.RawMessage, dataConfig json.RawMessage) (*DataBaseConfig, error) {
	return nil, errors.New("influxdb2 push is not built into this mapper (offline build)")
}

// InitDbClient is never reached (NewDataBaseClient fails).
func (d *DataBaseConfig) InitDbClient() Client { return Client{} }

// CloseSession is never reached.
func (d *DataBaseConfig) CloseSession(client Client) {}

// AddData is never reached.
func (d *DataBaseConfig) AddData(data *common.DataModel, client Client) error {
	return errors.New("influxdb2 push is not built into this mapper")
}
