//! The cluster map as operators read it (`ringcache cli cluster`, `CLUSTER INFO`): epoch,
//! groups with their primary, replicas and key share, the range move under way, members.

use std::fmt;

use crate::map::ClusterMap;

impl fmt::Display for ClusterMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shares = self.ring.shares();
        writeln!(
            f,
            "epoch: {}\ngroups: {}\nmembers: {}",
            self.epoch,
            self.groups.len(),
            self.members.len()
        )?;
        for g in &self.groups {
            let share = shares
                .iter()
                .find(|(id, _)| *id == g.id)
                .map_or(0.0, |(_, f)| *f);
            writeln!(
                f,
                "group {}: primary {} replicas {:?} key share {:.1}%",
                g.id,
                g.primary.map_or("none".to_string(), |p| p.to_string()),
                g.replicas,
                share * 100.0
            )?;
        }
        if let Some(mv) = &self.moving {
            writeln!(
                f,
                "range move {} under way: joining {:?} leaving {:?}",
                mv.id, mv.joining, mv.leaving
            )?;
        }
        for m in &self.members {
            writeln!(
                f,
                "member {}: {}:{} cores {:?} {:?} group {} {:?}",
                m.id,
                m.host,
                m.main_port,
                m.core_ports,
                m.role,
                m.group.map_or("-".to_string(), |g| g.to_string()),
                m.state
            )?;
        }
        Ok(())
    }
}
