/// A point in the plane.
pub struct Point {
    pub x: f64,
    pub y: f64,
}

impl Point {
    /// Distance from the origin.
    pub fn norm(&self) -> f64 {
        (self.x * self.x + self.y * self.y).sqrt()
    }
}

pub trait Area {
    fn area(&self) -> f64;
}

pub const ORIGIN_NAME: &str = "origin";
