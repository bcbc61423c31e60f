//! The small expression language of `cairn.toml`: `${{ ... }}` references in
//! `args`, `with` and `env`, and the `if` conditions that decide whether a
//! stage runs.
//!
//! References:
//! - `stages.NAME.outputs.KEY`: an output a needed stage returned;
//! - `stages.NAME.result`: `succeeded`, `cached`, `failed` or `skipped` (for a
//!   notification's text, say);
//! - `matrix.KEY`: this matrix entry's value;
//! - `env.NAME`: cairn's own environment variable (conditions only);
//! - `branch`: the checked-out git branch, empty when detached (conditions only);
//! - `environment.name`, `environment.url`: the stage's deployment
//!   environment (stages with `environment` only);
//! - `secrets.NAME`: a secret's value, in `http_auth` only (the host adds it
//!   to requests; the stage never sees it);
//! - `monitor.check`, `monitor.status`, `monitor.error`: in a stage another
//!   stage's `on_change` names, the check `cairn monitor` saw change, whether
//!   it is now `passing` or `failing`, and why it failed.
//!
//! Conditions combine values with `==`, `!=`, `&&`, `||`, `!` and
//! parentheses, string literals in single or double quotes, `true`, `false`,
//! and the functions `contains(a, b)`, `startsWith(a, b)` and `endsWith(a, b)`.
//! Every value is a string or a boolean; a string is true when not empty.

use std::fmt;

/// Something an expression reads.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum Reference {
    /// `stages.NAME.outputs.KEY`.
    StageOutput {
        /// The stage.
        stage: String,
        /// The output key.
        key: String,
    },
    /// `stages.NAME.result`.
    StageResult(String),
    /// `matrix.KEY`.
    Matrix(String),
    /// `env.NAME`.
    Env(String),
    /// `branch`.
    Branch,
    /// `secrets.NAME`.
    Secret(String),
    /// `environment.name` or `environment.url`.
    Environment(String),
    /// `monitor.check`, `monitor.status` or `monitor.error`.
    Monitor(String),
}

impl Reference {
    /// The stage this reference reads from, if any.
    pub fn stage(&self) -> Option<&str> {
        match self {
            Reference::StageOutput { stage, .. } | Reference::StageResult(stage) => Some(stage),
            _ => None,
        }
    }

    fn parse(path: &[&str]) -> Result<Self, String> {
        match path {
            ["stages", stage, "outputs", key] => Ok(Reference::StageOutput {
                stage: (*stage).to_owned(),
                key: (*key).to_owned(),
            }),
            ["stages", stage, "result"] => Ok(Reference::StageResult((*stage).to_owned())),
            ["matrix", key] => Ok(Reference::Matrix((*key).to_owned())),
            ["env", name] => Ok(Reference::Env((*name).to_owned())),
            ["branch"] => Ok(Reference::Branch),
            ["secrets", name] => Ok(Reference::Secret((*name).to_owned())),
            ["environment", field @ ("name" | "url")] => Ok(Reference::Environment((*field).to_owned())),
            ["monitor", field @ ("check" | "status" | "error")] => Ok(Reference::Monitor((*field).to_owned())),
            _ => Err(format!(
                "`{}` is not something an expression can read; use `stages.NAME.outputs.KEY`, \
                 `stages.NAME.result`, `matrix.KEY`, `env.NAME`, `branch`, `environment.name`, `environment.url`, \
                 `monitor.check|status|error` or (in `http_auth`) `secrets.NAME`",
                path.join(".")
            )),
        }
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reference::StageOutput { stage, key } => {
                write!(formatter, "stages.{stage}.outputs.{key}")
            }
            Reference::StageResult(stage) => write!(formatter, "stages.{stage}.result"),
            Reference::Matrix(key) => write!(formatter, "matrix.{key}"),
            Reference::Env(name) => write!(formatter, "env.{name}"),
            Reference::Branch => formatter.write_str("branch"),
            Reference::Secret(name) => write!(formatter, "secrets.{name}"),
            Reference::Environment(field) => write!(formatter, "environment.{field}"),
            Reference::Monitor(field) => write!(formatter, "monitor.{field}"),
        }
    }
}

/// A syntax error, at a byte offset within the expression's text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SyntaxError {
    /// What is wrong.
    pub message: String,
    /// Where, in bytes from the start of the text.
    pub offset: usize,
}

/// A string with `${{ reference }}` placeholders.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
enum Part {
    Text(String),
    Reference(Reference),
}

impl Template {
    /// Parses the placeholders of `text`.
    pub fn parse(text: &str) -> Result<Self, SyntaxError> {
        let mut parts = Vec::new();
        let mut rest = text;
        let mut consumed = 0;
        while let Some(start) = rest.find("${{") {
            if start > 0 {
                parts.push(Part::Text(rest[..start].to_owned()));
            }
            let inner_start = start + 3;
            let Some(length) = rest[inner_start..].find("}}") else {
                return Err(SyntaxError {
                    message: "`${{` is not closed by `}}`".to_owned(),
                    offset: consumed + start,
                });
            };
            let inner = rest[inner_start..inner_start + length].trim();
            let path: Vec<&str> = inner.split('.').map(str::trim).collect();
            let reference = Reference::parse(&path).map_err(|message| SyntaxError {
                message,
                offset: consumed + inner_start,
            })?;
            parts.push(Part::Reference(reference));
            let end = inner_start + length + 2;
            consumed += end;
            rest = &rest[end..];
        }
        if !rest.is_empty() {
            parts.push(Part::Text(rest.to_owned()));
        }
        Ok(Self { parts })
    }

    /// The references the template reads.
    pub fn references(&self) -> impl Iterator<Item = &Reference> {
        self.parts.iter().filter_map(|part| match part {
            Part::Reference(reference) => Some(reference),
            Part::Text(_) => None,
        })
    }

    /// Replaces the references `resolve` knows, keeping the others.
    pub fn substitute(&self, resolve: &dyn Fn(&Reference) -> Option<String>) -> Self {
        let mut parts: Vec<Part> = Vec::new();
        for part in &self.parts {
            let part = match part {
                Part::Reference(reference) => match resolve(reference) {
                    Some(value) => Part::Text(value),
                    None => part.clone(),
                },
                Part::Text(_) => part.clone(),
            };
            match (parts.last_mut(), part) {
                (Some(Part::Text(previous)), Part::Text(next)) => previous.push_str(&next),
                (_, part) => parts.push(part),
            }
        }
        Self { parts }
    }

    /// The text with every reference resolved, or the first one that cannot be.
    pub fn render(&self, resolve: &dyn Fn(&Reference) -> Option<String>) -> Result<String, Reference> {
        let mut text = String::new();
        for part in &self.parts {
            match part {
                Part::Text(literal) => text.push_str(literal),
                Part::Reference(reference) => text.push_str(&resolve(reference).ok_or_else(|| reference.clone())?),
            }
        }
        Ok(text)
    }
}

impl fmt::Display for Template {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        for part in &self.parts {
            match part {
                Part::Text(text) => formatter.write_str(text)?,
                Part::Reference(reference) => write!(formatter, "${{{{ {reference} }}}}")?,
            }
        }
        Ok(())
    }
}

/// A value in a condition.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Value {
    /// Text; true when not empty.
    String(String),
    /// `true`, `false`, or the result of a comparison.
    Bool(bool),
}

impl Value {
    /// Whether the value counts as true.
    pub fn truthy(&self) -> bool {
        match self {
            Value::String(text) => !text.is_empty(),
            Value::Bool(value) => *value,
        }
    }

    fn text(&self) -> String {
        match self {
            Value::String(text) => text.clone(),
            Value::Bool(value) => value.to_string(),
        }
    }
}

/// A parsed `if` condition.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Condition {
    /// A literal.
    Literal(Value),
    /// A reference, resolved when the stage is about to run.
    Reference(Reference),
    /// `!a`.
    Not(Box<Condition>),
    /// `a && b`.
    And(Box<Condition>, Box<Condition>),
    /// `a || b`.
    Or(Box<Condition>, Box<Condition>),
    /// `a == b` (or `!=` when `equal` is false).
    Compare {
        /// The left operand.
        left: Box<Condition>,
        /// The right operand.
        right: Box<Condition>,
        /// `==` when true, `!=` when false.
        equal: bool,
    },
    /// `contains(a, b)`, `startsWith(a, b)` or `endsWith(a, b)`.
    Call(Function, Box<Condition>, Box<Condition>),
}

/// The functions conditions can call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Function {
    /// `contains(haystack, needle)`.
    Contains,
    /// `startsWith(text, prefix)`.
    StartsWith,
    /// `endsWith(text, suffix)`.
    EndsWith,
}

impl Condition {
    /// Parses a condition, with or without a `${{ }}` wrapper.
    pub fn parse(text: &str) -> Result<Self, SyntaxError> {
        let trimmed = text.trim();
        let (body, base) = match trimmed.strip_prefix("${{").and_then(|rest| rest.strip_suffix("}}")) {
            Some(inner) => (inner, text.find("${{").map_or(0, |start| start + 3)),
            None => (text, 0),
        };
        let tokens = tokenize(body, base)?;
        if tokens.len() > MAX_TOKENS {
            return Err(SyntaxError {
                message: format!(
                    "the condition is too long: {} tokens, at most {MAX_TOKENS}",
                    tokens.len()
                ),
                offset: base,
            });
        }
        let mut parser = Parser {
            tokens,
            position: 0,
            depth: 0,
        };
        let condition = parser.or()?;
        match parser.tokens.get(parser.position) {
            None => Ok(condition),
            Some((token, offset)) => Err(SyntaxError {
                message: format!("unexpected {token} after the end of the condition"),
                offset: *offset,
            }),
        }
    }

    /// Every reference the condition reads.
    pub fn references(&self) -> Vec<&Reference> {
        let mut found = Vec::new();
        self.collect(&mut found);
        found
    }

    fn collect<'a>(&'a self, found: &mut Vec<&'a Reference>) {
        match self {
            Condition::Literal(_) => {}
            Condition::Reference(reference) => found.push(reference),
            Condition::Not(inner) => inner.collect(found),
            Condition::And(left, right)
            | Condition::Or(left, right)
            | Condition::Compare { left, right, .. }
            | Condition::Call(_, left, right) => {
                left.collect(found);
                right.collect(found);
            }
        }
    }

    /// Evaluates the condition; unresolvable references read as empty strings.
    pub fn evaluate(&self, resolve: &dyn Fn(&Reference) -> Option<String>) -> Value {
        match self {
            Condition::Literal(value) => value.clone(),
            Condition::Reference(reference) => Value::String(resolve(reference).unwrap_or_default()),
            Condition::Not(inner) => Value::Bool(!inner.evaluate(resolve).truthy()),
            Condition::And(left, right) => {
                Value::Bool(left.evaluate(resolve).truthy() && right.evaluate(resolve).truthy())
            }
            Condition::Or(left, right) => {
                Value::Bool(left.evaluate(resolve).truthy() || right.evaluate(resolve).truthy())
            }
            Condition::Compare { left, right, equal } => {
                Value::Bool((left.evaluate(resolve).text() == right.evaluate(resolve).text()) == *equal)
            }
            Condition::Call(function, left, right) => {
                let (left, right) = (left.evaluate(resolve).text(), right.evaluate(resolve).text());
                Value::Bool(match function {
                    Function::Contains => left.contains(&right),
                    Function::StartsWith => left.starts_with(&right),
                    Function::EndsWith => left.ends_with(&right),
                })
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    Path(Vec<String>),
    String(String),
    Equal,
    NotEqual,
    And,
    Or,
    Not,
    Open,
    Close,
    Comma,
}

impl fmt::Display for Token {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Token::Path(path) => write!(formatter, "`{}`", path.join(".")),
            Token::String(text) => write!(formatter, "'{text}'"),
            Token::Equal => formatter.write_str("`==`"),
            Token::NotEqual => formatter.write_str("`!=`"),
            Token::And => formatter.write_str("`&&`"),
            Token::Or => formatter.write_str("`||`"),
            Token::Not => formatter.write_str("`!`"),
            Token::Open => formatter.write_str("`(`"),
            Token::Close => formatter.write_str("`)`"),
            Token::Comma => formatter.write_str("`,`"),
        }
    }
}

fn tokenize(text: &str, base: usize) -> Result<Vec<(Token, usize)>, SyntaxError> {
    let mut tokens = Vec::new();
    let characters: Vec<(usize, char)> = text.char_indices().collect();
    let mut index = 0;
    while index < characters.len() {
        let (offset, character) = characters[index];
        let at = base + offset;
        let next = characters.get(index + 1).map(|(_, c)| *c);
        let token = match (character, next) {
            (c, _) if c.is_whitespace() => {
                index += 1;
                continue;
            }
            ('=', Some('=')) => Token::Equal,
            ('!', Some('=')) => Token::NotEqual,
            ('&', Some('&')) => Token::And,
            ('|', Some('|')) => Token::Or,
            ('!', _) => Token::Not,
            ('(', _) => Token::Open,
            (')', _) => Token::Close,
            (',', _) => Token::Comma,
            ('\'' | '"', _) => {
                let end = characters[index + 1..]
                    .iter()
                    .position(|(_, c)| *c == character)
                    .ok_or(SyntaxError {
                        message: "this string is not closed".to_owned(),
                        offset: at,
                    })?;
                let text: String = characters[index + 1..index + 1 + end].iter().map(|(_, c)| c).collect();
                tokens.push((Token::String(text), at));
                index += end + 2;
                continue;
            }
            (c, _) if c.is_ascii_alphabetic() || c == '_' => {
                let length = characters[index..]
                    .iter()
                    .take_while(|(_, c)| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
                    .count();
                let word: String = characters[index..index + length].iter().map(|(_, c)| c).collect();
                tokens.push((Token::Path(word.split('.').map(str::to_owned).collect()), at));
                index += length;
                continue;
            }
            (other, _) => {
                return Err(SyntaxError {
                    message: format!("unexpected `{other}`"),
                    offset: at,
                });
            }
        };
        let width = if matches!(token, Token::Equal | Token::NotEqual | Token::And | Token::Or) {
            2
        } else {
            1
        };
        tokens.push((token, at));
        index += width;
    }
    Ok(tokens)
}

/// The most tokens a condition may have: a condition's tree is evaluated,
/// walked and dropped recursively, so its size bounds the stack it takes.
const MAX_TOKENS: usize = 1024;

/// The deepest a condition may nest parentheses, `!` and function calls:
/// the parser recurses once per level.
const MAX_DEPTH: usize = 64;

struct Parser {
    tokens: Vec<(Token, usize)>,
    position: usize,
    /// How deep the parser is in nested `(`, `!` and calls.
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.position).map(|(token, _)| token)
    }

    fn offset(&self) -> usize {
        self.tokens
            .get(self.position)
            .or(self.tokens.last())
            .map_or(0, |(_, offset)| *offset)
    }

    fn expect(&mut self, expected: Token) -> Result<(), SyntaxError> {
        if self.peek() == Some(&expected) {
            self.position += 1;
            Ok(())
        } else {
            Err(SyntaxError {
                message: format!("expected {expected}"),
                offset: self.offset(),
            })
        }
    }

    /// Enters one more level of nesting, or refuses to.
    fn descend(&mut self) -> Result<(), SyntaxError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(SyntaxError {
                message: format!("the condition is nested too deep (more than {MAX_DEPTH} levels)"),
                offset: self.offset(),
            });
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Condition, SyntaxError> {
        let mut left = self.and()?;
        while self.peek() == Some(&Token::Or) {
            self.position += 1;
            left = Condition::Or(Box::new(left), Box::new(self.and()?));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Condition, SyntaxError> {
        let mut left = self.unary()?;
        while self.peek() == Some(&Token::And) {
            self.position += 1;
            left = Condition::And(Box::new(left), Box::new(self.unary()?));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Condition, SyntaxError> {
        if self.peek() == Some(&Token::Not) {
            self.position += 1;
            self.descend()?;
            let inner = self.unary()?;
            self.depth -= 1;
            return Ok(Condition::Not(Box::new(inner)));
        }
        let left = self.primary()?;
        let equal = match self.peek() {
            Some(Token::Equal) => true,
            Some(Token::NotEqual) => false,
            _ => return Ok(left),
        };
        self.position += 1;
        Ok(Condition::Compare {
            left: Box::new(left),
            right: Box::new(self.primary()?),
            equal,
        })
    }

    fn primary(&mut self) -> Result<Condition, SyntaxError> {
        let offset = self.offset();
        let Some((token, _)) = self.tokens.get(self.position).cloned() else {
            return Err(SyntaxError {
                message: "the condition ends too early".to_owned(),
                offset,
            });
        };
        self.position += 1;
        match token {
            Token::Open => {
                self.descend()?;
                let inner = self.or()?;
                self.expect(Token::Close)?;
                self.depth -= 1;
                Ok(inner)
            }
            Token::String(text) => Ok(Condition::Literal(Value::String(text))),
            Token::Path(path) => {
                let path: Vec<&str> = path.iter().map(String::as_str).collect();
                match path.as_slice() {
                    ["true"] => Ok(Condition::Literal(Value::Bool(true))),
                    ["false"] => Ok(Condition::Literal(Value::Bool(false))),
                    [name] if self.peek() == Some(&Token::Open) => {
                        let function = match *name {
                            "contains" => Function::Contains,
                            "startsWith" => Function::StartsWith,
                            "endsWith" => Function::EndsWith,
                            other => {
                                return Err(SyntaxError {
                                    message: format!(
                                        "unknown function `{other}`; there are `contains`, `startsWith` and `endsWith`"
                                    ),
                                    offset,
                                });
                            }
                        };
                        self.position += 1;
                        self.descend()?;
                        let left = self.or()?;
                        self.expect(Token::Comma)?;
                        let right = self.or()?;
                        self.expect(Token::Close)?;
                        self.depth -= 1;
                        Ok(Condition::Call(function, Box::new(left), Box::new(right)))
                    }
                    _ => Reference::parse(&path)
                        .map(Condition::Reference)
                        .map_err(|message| SyntaxError { message, offset }),
                }
            }
            other => Err(SyntaxError {
                message: format!("expected a value, found {other}"),
                offset,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(reference: &Reference) -> Option<String> {
        match reference {
            Reference::Branch => Some("main".into()),
            Reference::Env(name) if name == "CI" => Some("true".into()),
            Reference::StageOutput { stage, key } if stage == "lint" && key == "errors" => Some("0".into()),
            Reference::StageResult(stage) if stage == "lint" => Some("succeeded".into()),
            Reference::Matrix(key) if key == "target" => Some("x86".into()),
            _ => None,
        }
    }

    fn holds(text: &str) -> bool {
        Condition::parse(text)
            .unwrap_or_else(|error| panic!("{text}: {error:?}"))
            .evaluate(&resolve)
            .truthy()
    }

    #[test]
    fn conditions_combine_references_literals_and_functions() {
        assert!(holds("branch == 'main'"));
        assert!(holds("${{ branch == \"main\" && env.CI }}"));
        assert!(!holds("branch != 'main'"));
        assert!(holds("!env.UNSET && (env.CI == 'true' || false)"));
        assert!(holds(
            "stages.lint.outputs.errors == '0' && stages.lint.result == 'succeeded'"
        ));
        assert!(holds(
            "startsWith(branch, 'ma') && contains(matrix.target, '86') && endsWith('abc', 'c')"
        ));
        assert!(!holds("env.UNSET"));
    }

    #[test]
    fn condition_errors_say_where() {
        let error = Condition::parse("branch == 'main' &&").expect_err("incomplete");
        assert_eq!(error.message, "the condition ends too early");
        let error = Condition::parse("branch = 'main'").expect_err("single =");
        assert_eq!(error.offset, 7);
        let error = Condition::parse("stages.lint.output == '1'").expect_err("bad path");
        assert!(
            error.message.contains("`stages.lint.output` is not something"),
            "{}",
            error.message
        );
        let error = Condition::parse("lower(branch, 'x')").expect_err("unknown function");
        assert!(error.message.contains("unknown function `lower`"));
        assert!(Condition::parse("'open").is_err());
    }

    #[test]
    fn templates_substitute_and_render() {
        let template =
            Template::parse("--target=${{ matrix.target }} --errors=${{stages.lint.outputs.errors}}").expect("valid");
        assert_eq!(template.references().count(), 2);
        let partial = template.substitute(&|reference| match reference {
            Reference::Matrix(_) => resolve(reference),
            _ => None,
        });
        assert_eq!(
            partial.to_string(),
            "--target=x86 --errors=${{ stages.lint.outputs.errors }}"
        );
        assert_eq!(partial.render(&resolve).expect("resolvable"), "--target=x86 --errors=0");
        let missing = Template::parse("${{ stages.build.outputs.version }}").expect("valid");
        assert!(missing.render(&resolve).is_err());
        assert!(Template::parse("${{ matrix.target").is_err());
        assert_eq!(Template::parse("plain text").expect("valid").to_string(), "plain text");
    }

    #[test]
    fn deep_or_long_conditions_are_refused_where_they_go_too_far() {
        let parens = format!("{}true{}", "(".repeat(100), ")".repeat(100));
        let error = Condition::parse(&parens).expect_err("too deep");
        assert_eq!(error.message, "the condition is nested too deep (more than 64 levels)");
        assert_eq!(error.offset, MAX_DEPTH + 1, "just after the first `(` too many");

        let nots = format!("{}true", "!".repeat(100_000));
        let error = Condition::parse(&nots).expect_err("too many tokens");
        assert!(
            error.message.starts_with("the condition is too long: 100001 tokens"),
            "{}",
            error.message
        );

        let nots = format!("{}true", "!".repeat(65));
        let error = Condition::parse(&nots).expect_err("too deep");
        assert_eq!(error.message, "the condition is nested too deep (more than 64 levels)");

        let calls = format!("{}'a', 'b'{}", "contains(".repeat(65), ")".repeat(65));
        assert!(Condition::parse(&calls).is_err());

        // Up to the bounds, it parses and evaluates.
        let deep = format!("{}true{}", "(".repeat(64), ")".repeat(64));
        assert!(Condition::parse(&deep).expect("64 levels").evaluate(&|_| None).truthy());
        let chain = vec!["true"; 500].join(" && ");
        assert!(
            Condition::parse(&chain)
                .expect("999 tokens")
                .evaluate(&|_| None)
                .truthy()
        );
    }
}
