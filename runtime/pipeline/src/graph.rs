//! The stages as a graph: who waits on whom, a proof there is no cycle, and
//! drawings of it (`cairn graph`).

use std::collections::HashMap;
use std::fmt::Write as _;

use super::Stage;

/// The dependency graph of a pipeline's stages, by index into its stage list.
#[derive(Clone, Debug)]
pub struct Graph {
    /// For each stage, the stages it needs.
    pub needs: Vec<Vec<usize>>,
    /// For each stage, the stages that need it.
    pub dependents: Vec<Vec<usize>>,
    /// Every stage, each after all it needs.
    pub order: Vec<usize>,
}

/// How `cairn graph` draws the pipeline.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GraphFormat {
    /// A Mermaid flowchart, which GitHub renders in Markdown.
    Mermaid,
    /// Graphviz DOT.
    Dot,
}

impl Graph {
    /// Builds the graph, or returns the stages of a cycle when there is one:
    /// each needs the next, and the first is repeated at the end. Unknown names in `needs` are ignored;
    /// the parser reports them.
    pub fn new(stages: &[Stage]) -> Result<Self, Vec<String>> {
        let index: HashMap<&str, usize> = stages
            .iter()
            .enumerate()
            .map(|(i, stage)| (stage.name.as_str(), i))
            .collect();
        let needs: Vec<Vec<usize>> = stages
            .iter()
            .map(|stage| {
                stage
                    .needs
                    .iter()
                    .filter_map(|need| index.get(need.as_str()).copied())
                    .collect()
            })
            .collect();
        let mut dependents = vec![Vec::new(); stages.len()];
        for (stage, stage_needs) in needs.iter().enumerate() {
            for &need in stage_needs {
                dependents[need].push(stage);
            }
        }
        // Kahn's algorithm, taking ready stages in file order.
        let mut waiting: Vec<usize> = needs.iter().map(Vec::len).collect();
        let mut ready: std::collections::VecDeque<usize> = (0..stages.len()).filter(|&i| waiting[i] == 0).collect();
        let mut order = Vec::with_capacity(stages.len());
        while let Some(stage) = ready.pop_front() {
            order.push(stage);
            for &dependent in &dependents[stage] {
                waiting[dependent] -= 1;
                if waiting[dependent] == 0 {
                    ready.push_back(dependent);
                }
            }
        }
        if order.len() < stages.len() {
            return Err(find_cycle(stages, &needs, &waiting));
        }
        Ok(Self {
            needs,
            dependents,
            order,
        })
    }

    /// Draws the pipeline in `format`.
    pub fn render(&self, stages: &[Stage], format: GraphFormat) -> String {
        let mut out = String::new();
        match format {
            GraphFormat::Mermaid => {
                out.push_str("flowchart LR\n");
                for (index, stage) in stages.iter().enumerate() {
                    let _ = writeln!(out, "    s{index}[\"{}\"]", stage.name.replace('"', "#quot;"));
                }
                for (index, needs) in self.needs.iter().enumerate() {
                    for need in needs {
                        let _ = writeln!(out, "    s{need} --> s{index}");
                    }
                }
            }
            GraphFormat::Dot => {
                out.push_str("digraph pipeline {\n    rankdir=LR;\n    node [shape=box];\n");
                for stage in stages {
                    let _ = writeln!(out, "    {};", dot_id(&stage.name));
                }
                for (index, needs) in self.needs.iter().enumerate() {
                    for &need in needs {
                        let _ = writeln!(
                            out,
                            "    {} -> {};",
                            dot_id(&stages[need].name),
                            dot_id(&stages[index].name)
                        );
                    }
                }
                out.push_str("}\n");
            }
        }
        out
    }
}

fn dot_id(name: &str) -> String {
    format!("\"{}\"", name.replace('\\', "\\\\").replace('"', "\\\""))
}

/// Walks `needs` from a stage left on a cycle until a stage repeats.
fn find_cycle(stages: &[Stage], needs: &[Vec<usize>], waiting: &[usize]) -> Vec<String> {
    let Some(start) = (0..stages.len()).find(|&i| waiting[i] > 0) else {
        return Vec::new();
    };
    let mut path = vec![start];
    let mut current = start;
    loop {
        let Some(&next) = needs[current].iter().find(|&&need| waiting[need] > 0) else {
            return Vec::new();
        };
        if let Some(position) = path.iter().position(|&stage| stage == next) {
            let mut cycle: Vec<String> = path[position..].iter().map(|&i| stages[i].name.clone()).collect();
            cycle.push(cycle[0].clone());
            return cycle;
        }
        path.push(next);
        current = next;
    }
}
