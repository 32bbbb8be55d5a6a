<qgis version="3.34" styleCategories="Symbology">
  <!-- prom3e-geo style: diversity band 2 (richness, species) -->
  <pipe>
    <rasterrenderer type="singlebandpseudocolor" band="2" opacity="1" alphaBand="-1" classificationMin="0.0" classificationMax="30.0" nodataColor="">
      <rastershader>
        <colorrampshader colorRampType="INTERPOLATED" classificationMode="1" clip="0" minimumValue="0.0" maximumValue="30.0">
          <item alpha="255" value="0" label="0" color="#440154"/>
          <item alpha="255" value="7.5" label="7.5" color="#3b528b"/>
          <item alpha="255" value="15" label="15" color="#21918c"/>
          <item alpha="255" value="22.5" label="22.5" color="#5ec962"/>
          <item alpha="255" value="30" label="30" color="#fde725"/>
        </colorrampshader>
      </rastershader>
    </rasterrenderer>
    <brightnesscontrast brightness="0" contrast="0" gamma="1"/>
    <huesaturation saturation="0" colorizeOn="0" grayscaleMode="0"/>
    <rasterresampler maxOversample="2"/>
  </pipe>
  <blendMode>0</blendMode>
</qgis>
