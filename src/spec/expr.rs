//! The expression language of the feature spec: small enough to be evaluated row by row in
//! Rust and compiled to BigQuery SQL with the same floating-point operations in the same order.

use crate::calendar::{month_index_of, NyClock};

/// A raw or calendar input of a cleaned ride.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Input {
    /// Pickup latitude, degrees.
    PickupLat,
    /// Pickup longitude, degrees.
    PickupLon,
    /// Dropoff latitude, degrees.
    DropoffLat,
    /// Dropoff longitude, degrees.
    DropoffLon,
    /// Passenger count.
    Passengers,
    /// Pickup instant, Unix seconds UTC.
    Seconds,
    /// Seconds since the New York midnight.
    LocalSecondOfDay,
    /// New York day of week, 0 = Monday … 6 = Sunday.
    LocalWeekday,
    /// New York month of the year, 1..=12.
    LocalMonth,
    /// UTC months since 2009-01.
    MonthIndex,
}

/// A numeric expression. Every value is an `f64`; booleans are conditions ([`Cond`]).
#[derive(Clone, Debug, PartialEq)]
pub enum Expr {
    /// A constant.
    Num(f64),
    /// An input of the ride.
    In(Input),
    /// A value named earlier in the spec.
    Ref(String),
    /// `a + b`.
    Add(Box<Expr>, Box<Expr>),
    /// `a − b`.
    Sub(Box<Expr>, Box<Expr>),
    /// `a × b`.
    Mul(Box<Expr>, Box<Expr>),
    /// `a / b`.
    Div(Box<Expr>, Box<Expr>),
    /// A function of one value.
    Call(Func, Box<Expr>),
    /// `a` clamped to `[lo, hi]`.
    Clamp(Box<Expr>, f64, f64),
    /// The value of the first true condition, else the default.
    Case(Vec<(Cond, Expr)>, Box<Expr>),
}

/// A function of one value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Func {
    /// Sine (radians).
    Sin,
    /// Cosine (radians).
    Cos,
    /// Arc sine.
    Asin,
    /// Square root.
    Sqrt,
    /// Absolute value.
    Abs,
    /// Rounding down.
    Floor,
}

/// A condition on values.
#[derive(Clone, Debug, PartialEq)]
pub enum Cond {
    /// `a < b`.
    Lt(Expr, Expr),
    /// `a ≤ b`.
    Le(Expr, Expr),
    /// `a ≥ b`.
    Ge(Expr, Expr),
    /// `a = b`.
    Eq(Expr, Expr),
    /// `a ≠ b`.
    Ne(Expr, Expr),
    /// All hold.
    All(Vec<Cond>),
    /// One holds.
    Any(Vec<Cond>),
    /// Does not hold.
    Not(Box<Cond>),
}

/// Builders, so that a spec reads like the formula it states.
pub mod build {
    use super::{Cond, Expr, Func, Input};

    /// A constant.
    #[must_use]
    pub fn num(v: f64) -> Expr {
        Expr::Num(v)
    }
    /// An input.
    #[must_use]
    pub fn input(i: Input) -> Expr {
        Expr::In(i)
    }
    /// A named value.
    #[must_use]
    pub fn var(name: &str) -> Expr {
        Expr::Ref(name.to_owned())
    }
    /// `a + b`.
    #[must_use]
    pub fn add(a: Expr, b: Expr) -> Expr {
        Expr::Add(Box::new(a), Box::new(b))
    }
    /// `a − b`.
    #[must_use]
    pub fn sub(a: Expr, b: Expr) -> Expr {
        Expr::Sub(Box::new(a), Box::new(b))
    }
    /// `a × b`.
    #[must_use]
    pub fn mul(a: Expr, b: Expr) -> Expr {
        Expr::Mul(Box::new(a), Box::new(b))
    }
    /// `a / b`.
    #[must_use]
    pub fn div(a: Expr, b: Expr) -> Expr {
        Expr::Div(Box::new(a), Box::new(b))
    }
    /// `f(a)`.
    #[must_use]
    pub fn call(f: Func, a: Expr) -> Expr {
        Expr::Call(f, Box::new(a))
    }
    /// `a` clamped to `[lo, hi]`.
    #[must_use]
    pub fn clamp(a: Expr, lo: f64, hi: f64) -> Expr {
        Expr::Clamp(Box::new(a), lo, hi)
    }
    /// `if c { a } else { b }`.
    #[must_use]
    pub fn when(c: Cond, a: Expr, b: Expr) -> Expr {
        Expr::Case(vec![(c, a)], Box::new(b))
    }
    /// 1 where `c` holds, else 0.
    #[must_use]
    pub fn indicator(c: Cond) -> Expr {
        when(c, num(1.0), num(0.0))
    }
    /// `a < b`.
    #[must_use]
    pub fn lt(a: Expr, b: Expr) -> Cond {
        Cond::Lt(a, b)
    }
    /// `a ≤ b`.
    #[must_use]
    pub fn le(a: Expr, b: Expr) -> Cond {
        Cond::Le(a, b)
    }
    /// `a ≥ b`.
    #[must_use]
    pub fn ge(a: Expr, b: Expr) -> Cond {
        Cond::Ge(a, b)
    }
    /// `a = b`.
    #[must_use]
    pub fn eq(a: Expr, b: Expr) -> Cond {
        Cond::Eq(a, b)
    }
    /// A value is not zero.
    #[must_use]
    pub fn nonzero(a: Expr) -> Cond {
        Cond::Ne(a, num(0.0))
    }
}

/// What an expression reads: the inputs of one ride and the values named before it.
pub trait Env {
    /// An input of the ride.
    fn input(&mut self, i: Input) -> f64;
    /// A value named earlier.
    fn named(&self, name: &str) -> f64;
}

/// The inputs of one cleaned ride, with its calendar fields computed as the kernel does.
#[derive(Clone, Copy, Debug)]
pub struct RideInputs {
    /// Pickup point.
    pub pickup: (f64, f64),
    /// Dropoff point.
    pub dropoff: (f64, f64),
    /// Passengers.
    pub passengers: i64,
    /// Pickup instant, Unix seconds UTC.
    pub ts: i64,
}

impl RideInputs {
    /// The value of an input (the calendar fields through `clock`).
    #[must_use]
    pub fn get(&self, i: Input, clock: &mut NyClock) -> f64 {
        match i {
            Input::PickupLat => self.pickup.0,
            Input::PickupLon => self.pickup.1,
            Input::DropoffLat => self.dropoff.0,
            Input::DropoffLon => self.dropoff.1,
            Input::Passengers => self.passengers as f64,
            Input::Seconds => self.ts as f64,
            Input::LocalSecondOfDay => clock.local(self.ts).second_of_day as f64,
            Input::LocalWeekday => f64::from(clock.local(self.ts).weekday),
            Input::LocalMonth => f64::from(clock.local(self.ts).month),
            Input::MonthIndex => f64::from(month_index_of(self.ts)),
        }
    }
}

impl Expr {
    /// The value of the expression.
    pub fn eval(&self, env: &mut impl Env) -> f64 {
        match self {
            Self::Num(v) => *v,
            Self::In(i) => env.input(*i),
            Self::Ref(n) => env.named(n),
            Self::Add(a, b) => a.eval(env) + b.eval(env),
            Self::Sub(a, b) => a.eval(env) - b.eval(env),
            Self::Mul(a, b) => a.eval(env) * b.eval(env),
            Self::Div(a, b) => a.eval(env) / b.eval(env),
            Self::Call(f, a) => {
                let v = a.eval(env);
                match f {
                    Func::Sin => v.sin(),
                    Func::Cos => v.cos(),
                    Func::Asin => v.asin(),
                    Func::Sqrt => v.sqrt(),
                    Func::Abs => v.abs(),
                    Func::Floor => v.floor(),
                }
            }
            Self::Clamp(a, lo, hi) => a.eval(env).clamp(*lo, *hi),
            Self::Case(arms, default) => {
                for (c, v) in arms {
                    if c.holds(env) {
                        return v.eval(env);
                    }
                }
                default.eval(env)
            }
        }
    }

    /// The names this expression refers to.
    pub fn refs(&self, out: &mut Vec<String>) {
        match self {
            Self::Num(_) | Self::In(_) => {}
            Self::Ref(n) => out.push(n.clone()),
            Self::Add(a, b) | Self::Sub(a, b) | Self::Mul(a, b) | Self::Div(a, b) => {
                a.refs(out);
                b.refs(out);
            }
            Self::Call(_, a) | Self::Clamp(a, _, _) => a.refs(out),
            Self::Case(arms, default) => {
                for (c, v) in arms {
                    c.refs(out);
                    v.refs(out);
                }
                default.refs(out);
            }
        }
    }
}

impl Cond {
    /// Whether the condition holds.
    pub fn holds(&self, env: &mut impl Env) -> bool {
        match self {
            Self::Lt(a, b) => a.eval(env) < b.eval(env),
            Self::Le(a, b) => a.eval(env) <= b.eval(env),
            Self::Ge(a, b) => a.eval(env) >= b.eval(env),
            Self::Eq(a, b) => a.eval(env) == b.eval(env),
            Self::Ne(a, b) => a.eval(env) != b.eval(env),
            Self::All(cs) => cs.iter().all(|c| c.holds(env)),
            Self::Any(cs) => cs.iter().any(|c| c.holds(env)),
            Self::Not(c) => !c.holds(env),
        }
    }

    /// The names this condition refers to.
    pub fn refs(&self, out: &mut Vec<String>) {
        match self {
            Self::Lt(a, b) | Self::Le(a, b) | Self::Ge(a, b) | Self::Eq(a, b) | Self::Ne(a, b) => {
                a.refs(out);
                b.refs(out);
            }
            Self::All(cs) | Self::Any(cs) => cs.iter().for_each(|c| c.refs(out)),
            Self::Not(c) => c.refs(out),
        }
    }
}
