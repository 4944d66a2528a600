//! Kernel code addresses named by /proc/kallsyms, for kernels whose drops carry only the
//! location that freed the skb.

use std::io;

/// The kernel's text symbols, sorted by address.
pub struct Kallsyms {
    symbols: Vec<(u64, String)>,
}

impl Kallsyms {
    pub fn read() -> io::Result<Self> {
        let text = std::fs::read_to_string("/proc/kallsyms")?;
        let symbols = Self::parse(&text);
        if symbols.symbols.is_empty() {
            // kptr_restrict hides every address from this process.
            return Err(io::Error::other("/proc/kallsyms shows no addresses"));
        }
        Ok(symbols)
    }

    /// Parses `ADDRESS TYPE NAME [MODULE]` lines, keeping code symbols with a real address.
    pub fn parse(text: &str) -> Self {
        let mut symbols: Vec<(u64, String)> = text
            .lines()
            .filter_map(|line| {
                let mut fields = line.split_whitespace();
                let address = u64::from_str_radix(fields.next()?, 16).ok()?;
                let kind = fields.next()?;
                let name = fields.next()?;
                (address != 0 && matches!(kind, "t" | "T")).then(|| (address, name.to_owned()))
            })
            .collect();
        symbols.sort_unstable();
        Self { symbols }
    }

    /// `address` as SYMBOL+0xOFFSET, by the nearest symbol at or below it.
    pub fn name(&self, address: u64) -> Option<String> {
        let after = self.symbols.partition_point(|(start, _)| *start <= address);
        let (start, name) = self.symbols.get(after.checked_sub(1)?)?;
        Some(format!("{name}+{:#x}", address - start))
    }
}

#[cfg(test)]
mod tests {
    use super::Kallsyms;

    #[test]
    fn names_an_address_by_the_symbol_below_it() {
        let symbols = Kallsyms::parse(
            "ffffffff81000000 T _stext\n\
             ffffffff81a00100 t nf_hook_slow\n\
             ffffffff81a00200 T neigh_invalidate\n\
             ffffffff81b00000 D some_data\n\
             0000000000000000 T hidden\n",
        );
        assert_eq!(
            symbols.name(0xffff_ffff_81a0_019c).as_deref(),
            Some("nf_hook_slow+0x9c")
        );
        assert_eq!(
            symbols.name(0xffff_ffff_81a0_0200).as_deref(),
            Some("neigh_invalidate+0x0")
        );
        assert_eq!(symbols.name(0x1000), None);
    }
}
