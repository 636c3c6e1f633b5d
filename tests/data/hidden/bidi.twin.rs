fn greet() {
    // שלום‏ עולם: hello world in Hebrew
    println!("hello");
}
