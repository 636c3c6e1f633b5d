pub fn to_ocsf() {}
