package agent.security_test

import data.agent.security

test_small_upload_to_acme_allowed if {
	security.allow_upload with input as {"kind": "net.upload", "dest": "uploads.acme.com", "size": 5242880}
}

test_large_upload_denied if {
	not security.allow_upload with input as {"kind": "net.upload", "dest": "uploads.acme.com", "size": 20971520}
}

test_other_host_denied if {
	not security.allow_upload with input as {"kind": "net.upload", "dest": "evil.example.com", "size": 100}
}

test_exact_limit_denied if {
	not security.allow_upload with input as {"kind": "net.upload", "dest": "storage.corp.local", "size": 10485760}
}
