package upgrade

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"
)

// The YAML inventory as ansible-core's yaml plugin reads it: top-level
// keys are groups; a group has vars, hosts (patterns, each with its vars)
// and children (groups, recursively). Ansible reads YAML 1.1 (PyYAML), so
// plain yes/no/on/off are booleans and 0755 is octal; scalars are turned
// into the text Ansible's value would print as.

// looksLikeYAMLInventory says whether a file without extension is a YAML
// inventory: Ansible tries its yaml plugin first and falls back to ini
// when the file is not a YAML mapping.
func looksLikeYAMLInventory(b []byte) bool {
	var root yaml.Node
	if yaml.Unmarshal(b, &root) != nil || len(root.Content) == 0 {
		return false
	}
	return root.Content[0].Kind == yaml.MappingNode
}

func parseAnsibleYAML(b []byte) (*ansInventory, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInventory, err)
	}
	inv := newAnsInventory()
	if len(root.Content) == 0 || isNull(root.Content[0]) {
		return nil, fmt.Errorf("%w: empty YAML inventory", ErrInventory)
	}
	top := root.Content[0]
	if top.Kind != yaml.MappingNode {
		return nil, fmt.Errorf("%w: top level must be a mapping of groups", ErrInventory)
	}
	for i := 0; i+1 < len(top.Content); i += 2 {
		if top.Content[i].Value == "plugin" {
			return nil, fmt.Errorf("%w: an inventory plugin configuration, not an inventory", ErrInventory)
		}
	}
	budget := yamlBudget
	for i := 0; i+1 < len(top.Content); i += 2 {
		if err := walkYAMLGroup(inv, top.Content[i].Value, top.Content[i+1], 0, &budget); err != nil {
			return nil, err
		}
	}
	return inv, nil
}

// yamlBudget bounds the work of one file: aliases can make a small file
// name the same mapping a billion times.
const yamlBudget = 1 << 20

var errYAMLBudget = fmt.Errorf("%w: too many aliases or values", ErrInventory)

// spend takes n from the budget.
func spend(budget *int, n int) error {
	if *budget -= n; *budget < 0 {
		return errYAMLBudget
	}
	return nil
}

func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 64; i++ {
		n = n.Alias
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n == nil || n.Kind == 0 || (n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

// asMapping returns n as a mapping; a plain string s stands for {s: null},
// as Ansible allows for hosts, children and vars.
func asMapping(n *yaml.Node) *yaml.Node {
	if n.Kind == yaml.ScalarNode && n.Tag == "!!str" {
		return &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{n, {Kind: yaml.ScalarNode, Tag: "!!null"}}}
	}
	return n
}

func walkYAMLGroup(inv *ansInventory, name string, n *yaml.Node, depth int, budget *int) error {
	if depth > 32 {
		return fmt.Errorf("%w: groups nest too deep", ErrInventory)
	}
	n = deref(n)
	if err := spend(budget, 1+len(n.Content)); err != nil {
		return err
	}
	if isNull(n) {
		inv.group(name)
		return nil
	}
	if n.Kind != yaml.MappingNode {
		return fmt.Errorf("%w: line %d: group %q must be a mapping", ErrInventory, n.Line, name)
	}
	inv.group(name)
	for i := 0; i+1 < len(n.Content); i += 2 {
		key, val := n.Content[i].Value, n.Content[i+1]
		if key != "vars" && key != "hosts" && key != "children" {
			return fmt.Errorf("%w: line %d: group %q: unknown key %q (want vars, hosts or children)", ErrInventory, n.Content[i].Line, name, key)
		}
		val = deref(val)
		if isNull(val) {
			continue
		}
		val = asMapping(val)
		if val.Kind != yaml.MappingNode {
			return fmt.Errorf("%w: line %d: %s of %q must be a mapping", ErrInventory, val.Line, key, name)
		}
		switch key {
		case "vars":
			v, err := yamlVars(val, budget)
			if err != nil {
				return err
			}
			for _, k := range v.order {
				if err := inv.setGroupVar(name, k, v.m[k]); err != nil {
					return err
				}
			}
		case "hosts":
			for j := 0; j+1 < len(val.Content); j += 2 {
				kn := val.Content[j]
				if err := spend(budget, 1); err != nil {
					return err
				}
				if kn.Kind != yaml.ScalarNode || (kn.Tag != "!!str" && kn.Tag != "") {
					return fmt.Errorf("%w: line %d: host pattern %q must be a string (quote numbers)", ErrInventory, kn.Line, kn.Value)
				}
				hv, err := yamlVars(val.Content[j+1], budget)
				if err != nil {
					return err
				}
				hosts, port, err := expandHostPattern(kn.Value)
				if err != nil {
					return fmt.Errorf("line %d: %w", kn.Line, err)
				}
				p, _ := strconv.Atoi(port)
				for _, h := range hosts {
					if err := inv.addHost(name, h, p, hv.m); err != nil {
						return fmt.Errorf("line %d: %w", kn.Line, err)
					}
				}
			}
		case "children":
			for j := 0; j+1 < len(val.Content); j += 2 {
				child := val.Content[j].Value
				if err := walkYAMLGroup(inv, child, val.Content[j+1], depth+1, budget); err != nil {
					return err
				}
				if err := inv.addChild(name, child); err != nil {
					return fmt.Errorf("line %d: %w", val.Content[j].Line, err)
				}
			}
		}
	}
	return nil
}

type yamlVarMap struct {
	m     map[string]string
	order []string
}

// yamlVars reads a mapping of variables. Structured values mean nothing
// to a rollout and are left out.
func yamlVars(n *yaml.Node, budget *int) (yamlVarMap, error) {
	out := yamlVarMap{m: map[string]string{}}
	n = deref(n)
	if isNull(n) {
		return out, nil
	}
	if err := spend(budget, 1+len(n.Content)); err != nil {
		return out, err
	}
	if n.Kind != yaml.MappingNode {
		return out, fmt.Errorf("%w: line %d: vars must be a mapping", ErrInventory, n.Line)
	}
	set := func(k string, v *yaml.Node) {
		v = deref(v)
		if v == nil || v.Kind != yaml.ScalarNode {
			return
		}
		if _, ok := out.m[k]; !ok {
			out.order = append(out.order, k)
		}
		out.m[k] = yamlScalar(v)
	}
	// A merge key (<<: *base) brings in the named mappings' keys under
	// the ones written here, as PyYAML does.
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value != "<<" || n.Content[i].Tag == "!!str" && n.Content[i].Style != 0 {
			continue
		}
		srcs := []*yaml.Node{deref(n.Content[i+1])}
		if srcs[0] != nil && srcs[0].Kind == yaml.SequenceNode {
			srcs = srcs[0].Content
		}
		for j := len(srcs) - 1; j >= 0; j-- {
			m, err := yamlVars(srcs[j], budget)
			if err != nil {
				return out, err
			}
			for _, k := range m.order {
				if _, ok := out.m[k]; !ok {
					out.order = append(out.order, k)
				}
				out.m[k] = m.m[k]
			}
		}
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "<<" && !(n.Content[i].Tag == "!!str" && n.Content[i].Style != 0) {
			continue
		}
		set(n.Content[i].Value, n.Content[i+1])
	}
	return out, nil
}

// parseVarsYAML reads a group_vars or host_vars file: one mapping.
func parseVarsYAML(b []byte) (map[string]string, error) {
	var root yaml.Node
	if err := yaml.Unmarshal(b, &root); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInventory, err)
	}
	if len(root.Content) == 0 || isNull(root.Content[0]) {
		return nil, nil
	}
	budget := yamlBudget
	v, err := yamlVars(root.Content[0], &budget)
	return v.m, err
}

var (
	yaml11Int    = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[-+]?(?:0|[1-9][0-9_]*)$`) })
	yaml11Octal  = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[-+]?0[0-7_]+$`) })
	yaml11Hex    = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[-+]?0x[0-9a-fA-F_]+$`) })
	yaml11Binary = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[-+]?0b[01_]+$`) })
)

// yamlScalar is the text of Ansible's value for a scalar: YAML 1.1
// booleans as true/false, integers in decimal, null as empty (unset),
// strings as they are.
func yamlScalar(n *yaml.Node) string {
	if n.Tag == "!!null" {
		return ""
	}
	if n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle|yaml.LiteralStyle|yaml.FoldedStyle) != 0 ||
		(n.Tag != "!!str" && n.Tag != "!!int" && n.Tag != "!!bool" && n.Tag != "!!float") {
		return n.Value // quoted, or tagged (!vault, !unsafe): a string
	}
	v := n.Value
	switch v {
	case "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON":
		return "true"
	case "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF":
		return "false"
	case "~", "null", "Null", "NULL", "":
		return ""
	}
	clean := strings.ReplaceAll(v, "_", "")
	base := 0
	switch {
	case yaml11Hex().MatchString(v):
		base = 16
		clean = strings.Replace(strings.Replace(clean, "0x", "", 1), "0X", "", 1)
	case yaml11Binary().MatchString(v):
		base = 2
		clean = strings.Replace(clean, "0b", "", 1)
	case yaml11Octal().MatchString(v):
		base = 8
	case yaml11Int().MatchString(v):
		base = 10
	}
	if base != 0 {
		if n, err := strconv.ParseInt(clean, base, 64); err == nil {
			return strconv.FormatInt(n, 10)
		}
	}
	return v
}
