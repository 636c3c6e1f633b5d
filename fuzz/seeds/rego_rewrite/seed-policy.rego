package agent.security
default allow_upload = false
allow_upload {
  input.size < 10485760
  input.dest in ["uploads.acme.com", "storage.corp.local"]
}
