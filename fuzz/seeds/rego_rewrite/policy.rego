# The seed's upload policy, rewritten in Rego v1 (the seed's text is Rego v0: no `if`, and `in`
# without `import future.keywords.in`, so neither OPA 1.x nor regorus accepts it as written).
package agent.security

default allow_upload := false

allow_upload if {
	input.size < 10485760 # 10 MiB
	input.dest in ["uploads.acme.com", "storage.corp.local"]
}
