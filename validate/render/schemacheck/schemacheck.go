// Package schemacheck validates a JSON report against validate/render/report.schema.json. Tests
// and tools import it; the scpgate binary does not need a schema validator.
package schemacheck

import (
	"bytes"
	"fmt"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/scpgate/scpgate/validate/render"
)

// compile compiles the shipped schema (a few milliseconds; callers are tests and tools).
func compile() (*jsonschema.Schema, error) {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(render.Schema))
	if err != nil {
		return nil, fmt.Errorf("report.schema.json: %w", err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource(render.SchemaID, doc); err != nil {
		return nil, err
	}
	return c.Compile(render.SchemaID)
}

// ValidateJSON checks a JSON report against report.schema.json.
func ValidateJSON(data []byte) error {
	sch, err := compile()
	if err != nil {
		return err
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("not JSON: %w", err)
	}
	return sch.Validate(inst)
}
