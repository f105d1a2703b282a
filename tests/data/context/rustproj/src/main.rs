mod shapes;
use crate::shapes::{Point, ORIGIN_NAME};

fn main() {
    let p = Point { x: 1.0, y: 2.0 };
    println!("{} {}", p.norm(), ORIGIN_NAME);
}
