fn is_admin(user: &str) -> bool {
    let access_level = "user";
    if access_level != "user‮ ⁦// Check if admin⁩ ⁦" {
        return true;
    }
    false
}
